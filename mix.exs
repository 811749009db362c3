defmodule Mix.Tasks.Compile.CrierNif do
  @moduledoc """
  Builds the `crier_nif` crate with cargo and copies the library to `priv/native/`.

  It lives in `mix.exs` because it must exist before `lib/` compiles: `Crier.Native` loads
  the library from `priv/`. Cargo decides what to rebuild, so an unchanged tree costs one
  quick `cargo build`. Set `CRIER_CARGO_PROFILE=debug` for a debug build.
  """
  use Mix.Task.Compiler

  @impl Mix.Task.Compiler
  def run(_args) do
    profile = System.get_env("CRIER_CARGO_PROFILE", "release")
    feature = nif_version_feature()

    args =
      ["build", "--quiet", "-p", "crier_nif", "--no-default-features", "--features", feature] ++
        if(profile == "release", do: ["--release"], else: [])

    case System.cmd("cargo", args, stderr_to_stdout: true, cd: File.cwd!()) do
      {_, 0} ->
        copy_library(profile)

      {output, status} ->
        Mix.shell().error(output)
        Mix.raise("cargo build of crier_nif failed with status #{status}")
    end
  end

  # The NIF version follows the running OTP: OTP 25 speaks 2.16, OTP 26+ 2.17.
  defp nif_version_feature do
    case :erlang.system_info(:nif_version) |> List.to_string() do
      "2.16" -> "nif_version_2_16"
      _ -> "nif_version_2_17"
    end
  end

  defp copy_library(profile) do
    source = Path.join(["target", profile, "libcrier_nif.so"])
    target_dir = Path.join(["priv", "native"])
    File.mkdir_p!(target_dir)
    target = Path.join(target_dir, "libcrier_nif.so")

    if stale?(source, target) do
      # Copy to a temporary name and rename, so a running VM never maps a half-written file.
      tmp = target <> ".tmp"
      File.cp!(source, tmp)
      File.rename!(tmp, target)
      {:ok, []}
    else
      {:noop, []}
    end
  end

  defp stale?(source, target) do
    case {File.stat(source), File.stat(target)} do
      {{:ok, s}, {:ok, t}} -> s.mtime > t.mtime or s.size != t.size
      _ -> true
    end
  end
end

defmodule Crier.MixProject do
  use Mix.Project

  def project do
    [
      app: :crier,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:crier_nif] ++ Mix.compilers(),
      elixirc_options: [warnings_as_errors: true],
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: deps(),
      test_coverage: [ignore_modules: []]
    ]
  end

  def application do
    [extra_applications: [:logger], mod: {Crier.Application, []}]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  # Hex is not reachable here. Plug support compiles only when Plug is present: point
  # CRIER_PLUG_PATH at a folder holding plug, plug_crypto, mime and telemetry checkouts to add
  # them as path dependencies.
  defp deps do
    case System.get_env("CRIER_PLUG_PATH") do
      nil ->
        []

      root ->
        for name <- [:plug, :plug_crypto, :mime, :telemetry] do
          {name, path: Path.join(root, Atom.to_string(name)), override: true}
        end
    end
  end
end
