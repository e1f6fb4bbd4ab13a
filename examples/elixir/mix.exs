# A small Elixir project that uses emmap as a dependency. emmap is a rebar3
# project: Mix builds it with rebar3 (no hex needed: point MIX_REBAR3 at the
# system's rebar3), and its build hook compiles the NIF with Meson.
#
#   MIX_REBAR3=$(command -v rebar3) mix test
defmodule EmmapExample.MixProject do
  use Mix.Project

  def project do
    [
      app: :emmap_example,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: deps()
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  # By path (this checkout). From git instead:
  #   {:emmap, git: "https://example.org/emmap.git", branch: "main"}
  defp deps do
    [{:emmap, path: "../.."}]
  end
end
