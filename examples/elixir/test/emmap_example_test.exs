defmodule EmmapExampleTest do
  use ExUnit.Case, async: true

  setup do
    dir = Path.join(System.tmp_dir!(), "emmap-ex-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    {:ok, dir: dir}
  end

  test "a map: write, read, resize, sync, and the file module", %{dir: dir} do
    path = Path.join(dir, "map.bin")
    assert EmmapExample.roundtrip(path, 100, "from Elixir") == "from Elixir"
    {:ok, mem, %{exist: true, size: 4096}} = :emmap.open(path, [:read, :write])
    assert {:ok, "from Elixir"} == :file.pread(mem, 100, 11)
    assert {:ok, 8192} == :emmap.resize(mem)
    assert :ok == :emmap.sync(mem)
    assert :ok == :emmap.close(mem)
    assert {:error, :closed} == :emmap.pread(mem, 0, 1)
  end

  test "atomics from many Elixir processes add exactly", %{dir: dir} do
    path = Path.join(dir, "atomics.bin")
    {:ok, mem, _} = :emmap.open(path, [:create, :read, :write, size: 64])
    1..8
    |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..1000, do: :emmap.patomic_add(mem, 8, 1) end) end)
    |> Enum.each(&Task.await/1)
    assert {:ok, 8000} == :emmap.patomic_read_integer(mem, 8)
    assert {true, 8000} == :emmap.patomic_cas(mem, 8, 8000, 1)
    :ok = :emmap.close(mem)
    assert EmmapExample.count(Path.join(dir, "count.bin"), 10) == 10
  end

  test "persistent counters survive closing", %{dir: dir} do
    path = Path.join(dir, "counters.bin")
    c = :emmap.open_counters(path, 2)
    assert 0 == :emmap.inc_counter(c, 1, 5)
    :ok = :emmap.close_counters(c)
    c = :emmap.open_counters(path, 2)
    assert 5 == :emmap.read_counter(c, 1)
    :ok = :emmap.close_counters(c)
  end

  test "the persistent queue keeps Elixir terms in order across a reopen", %{dir: dir} do
    path = Path.join(dir, "events.q")
    {:ok, q} = :emmap_queue.open(path, 4096, sync: :always)
    events = for i <- 1..100, do: %{id: i, at: {2026, 11, 22}, tags: [:a, "b"]}
    Enum.each(events, &(:ok = :emmap_queue.push(q, &1)))
    :ok = :emmap_queue.close(q)
    {:ok, q} = :emmap_queue.open(path, 4096, [])
    assert 100 == :emmap_queue.length(q)
    assert events == Enum.map(1..100, fn _ -> :emmap_queue.pop(q) end)
    assert :nil == :emmap_queue.pop(q)
    :ok = :emmap_queue.close(q)
  end

  test "bad input is an error or badarg, never a crash", %{dir: dir} do
    assert {:error, :enoent} == :emmap.open(Path.join(dir, "missing"), [:read])
    assert {:error, {:invalid_option, :bogus}} == :emmap.open(Path.join(dir, "x"), [:bogus])
    assert_raise ArgumentError, fn -> :emmap.pread(:not_a_handle, 0, 1) end
  end
end
