defmodule Mix.Tasks.Compile.CrierNif do
  @moduledoc """
  Builds the `crier_nif` crate with cargo and copies the library to `priv/native/`.

  It lives in `mix.exs` because it must exist before `lib/` compiles: `Crier.Native` loads
  the library from `priv/`. Cargo decides what to rebuild, so an unchanged tree costs one
  quick `cargo build`. Set `CRIER_CARGO_PROFILE=debug` for a debug build. Cargo's output
  is looked for where cargo puts it: `CARGO_TARGET_DIR` when set (relative to the project
  root, as cargo reads it), else `target/`, under the platform's library name.
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

  @doc """
  Where cargo leaves the library for `profile`, and the name it must have in
  `priv/native/` for `:erlang.load_nif/2` (which adds `.so` on every Unix, macOS included,
  and `.dll` on Windows), given `CARGO_TARGET_DIR` (or nil) and `:os.type/0`.
  """
  @spec library_paths(String.t(), String.t() | nil, {atom(), atom()}) :: {Path.t(), Path.t()}
  def library_paths(profile, cargo_target_dir, os_type) do
    {built, loaded} =
      case os_type do
        {:win32, _} -> {"crier_nif.dll", "libcrier_nif.dll"}
        {:unix, :darwin} -> {"libcrier_nif.dylib", "libcrier_nif.so"}
        {:unix, _} -> {"libcrier_nif.so", "libcrier_nif.so"}
      end

    target_dir = Path.expand(cargo_target_dir || "target", File.cwd!())
    {Path.join([target_dir, profile, built]), Path.join(["priv", "native", loaded])}
  end

  defp copy_library(profile) do
    {source, target} = library_paths(profile, System.get_env("CARGO_TARGET_DIR"), :os.type())
    File.mkdir_p!(Path.dirname(target))

    if stale?(source, target) do
      # Copy to a temporary name and rename, so a running VM never maps a half-written file.
      # The name is unique per OS process: two builds sharing priv/ must not share it.
      tmp = "#{target}.#{System.pid()}.tmp"
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

defmodule Crier.MixProject.NoHexSCM do
  @moduledoc false
  # Plug's own mix.exs asks for its deps by version ({:mime, "~> 2.0"}), and Mix needs an SCM
  # for every such entry before the path deps in Crier.MixProject.deps/0 can override it;
  # that SCM is Hex's.
  # Where Hex is not installed, this stand-in accepts them and fetches nothing: the path
  # deps take their place. With Hex installed it stays out of the way.
  @behaviour Mix.SCM

  def register do
    unless Code.ensure_loaded?(Hex) or __MODULE__ in Mix.SCM.available() do
      Mix.SCM.append(__MODULE__)
    end
  end

  @impl true
  def fetchable?, do: false
  @impl true
  def format(_opts), do: "version requirement, overridden by a CRIER_PLUG_PATH path dep"
  @impl true
  def format_lock(_opts), do: nil
  @impl true
  def accepts_options(_app, opts), do: opts
  @impl true
  def checked_out?(_opts), do: false
  @impl true
  def lock_status(_opts), do: :ok
  @impl true
  def equal?(_opts1, _opts2), do: true
  @impl true
  def managers(_opts), do: []
  @impl true
  def checkout(_opts), do: Mix.raise("Hex is not installed; set CRIER_PLUG_PATH to path deps")
  @impl true
  def update(_opts), do: Mix.raise("Hex is not installed; set CRIER_PLUG_PATH to path deps")
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
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: deps(System.get_env("CRIER_PLUG_PATH"), Code.ensure_loaded?(Hex)),
      description:
        "Server-Sent Events for Elixir, served by a Rust core that tells you the moment a client is gone.",
      package: package(),
      build_path: build_path(),
      test_coverage: [ignore_modules: []]
    ]
  end

  def application do
    [extra_applications: [:logger], mod: {Crier.Application, []}]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  # Crier.PlugAdapter exists only when Plug is there at compile time, and Mix does not
  # recompile a file when a dependency appears: builds with and without Plug live apart.
  # (MIX_BUILD_PATH, when set, wins: give each its own.)
  defp build_path do
    if System.get_env("CRIER_PLUG_PATH"), do: "_build/with_plug", else: "_build"
  end

  # Plug and telemetry are optional: Crier.PlugAdapter and the telemetry events exist only
  # when they are loaded. As optional deps, a user's Plug (from Hex) compiles before Crier
  # whatever order Mix would otherwise pick. Without Hex (this project's CI), point
  # CRIER_PLUG_PATH at a folder holding plug, plug_crypto, mime and telemetry checkouts to
  # add them as path dependencies; with neither, Crier builds without them.
  @doc false
  def deps(plug_path, hex?)

  def deps(nil, true) do
    [
      {:plug, "~> 1.14", optional: true},
      {:telemetry, "~> 0.4 or ~> 1.0", optional: true}
    ]
  end

  def deps(nil, false), do: []

  def deps(root, _hex?) do
    Crier.MixProject.NoHexSCM.register()

    for name <- [:plug, :plug_crypto, :mime, :telemetry] do
      {name, path: Path.join(root, Atom.to_string(name)), override: true}
    end
  end

  # What a Hex release carries: the Elixir code and the Rust workspace it builds from.
  defp package do
    [
      licenses: ["Apache-2.0"],
      links: %{},
      files: ~w(lib native/crier_core/Cargo.toml native/crier_core/src native/crier_nif/Cargo.toml
           native/crier_nif/src Cargo.toml Cargo.lock mix.exs README.md LICENSE CHANGELOG.md)
    ]
  end
end
