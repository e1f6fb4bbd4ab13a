defmodule EmmapExample do
  @moduledoc """
  emmap from Elixir: the Erlang modules are called as atoms (`:emmap`,
  `:emmap_queue`). A handle works with Elixir's `:file` calls too.
  """

  @doc "Writes `data` at `pos` of a new mapped file and reads it back."
  def roundtrip(path, pos, data) do
    {:ok, mem, _info} = :emmap.open(path, [:create, :read, :write, size: 4096])
    :ok = :emmap.pwrite(mem, pos, data)
    {:ok, read} = :emmap.pread(mem, pos, byte_size(data))
    :ok = :emmap.close(mem)
    read
  end

  @doc "Adds `n` times one to the 64-bit counter at byte 0; returns the total."
  def count(path, n) do
    {:ok, mem, _} = :emmap.open(path, [:create, :read, :write, size: 8])
    for _ <- 1..n, do: {:ok, _old} = :emmap.patomic_add(mem, 0, 1)
    {:ok, total} = :emmap.patomic_read_integer(mem, 0)
    :ok = :emmap.close(mem)
    total
  end
end
