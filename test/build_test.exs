defmodule Crier.BuildTest do
  @moduledoc """
  The build and the package: the mix compiler task finds cargo's output where cargo puts it
  (`CARGO_TARGET_DIR`, the platform's library name), warnings are errors only where CI asks,
  Plug and telemetry are optional deps wherever Hex is there, and a Hex package carries what
  it needs to build.
  """
  use ExUnit.Case, async: true

  alias Mix.Tasks.Compile.CrierNif

  @root Path.expand("..", __DIR__)

  describe "the compiler task" do
    test "reads cargo's output from CARGO_TARGET_DIR when set, else target/" do
      File.cd!(@root, fn ->
        assert {Path.join(@root, "target/release/libcrier_nif.so"), "priv/native/libcrier_nif.so"} ==
                 CrierNif.library_paths("release", nil, {:unix, :linux})

        assert {"/tmp/cargo-out/debug/libcrier_nif.so", _} =
                 CrierNif.library_paths("debug", "/tmp/cargo-out", {:unix, :linux})

        # Relative, as cargo reads it: from the directory it runs in, the project root.
        relative = Path.join(@root, "build/cargo/release/libcrier_nif.so")
        assert {^relative, _} = CrierNif.library_paths("release", "build/cargo", {:unix, :linux})
      end)
    end

    test "uses the platform's library name, and the one load_nif looks for" do
      assert {source, "priv/native/libcrier_nif.so"} =
               CrierNif.library_paths("release", "/t", {:unix, :darwin})

      assert source == "/t/release/libcrier_nif.dylib"

      assert {"/t/release/crier_nif.dll", "priv/native/libcrier_nif.dll"} =
               CrierNif.library_paths("release", "/t", {:win32, :nt})
    end

    test "warnings are not errors in the project's own config" do
      refute Keyword.get(Mix.Project.config()[:elixirc_options] || [], :warnings_as_errors)
    end
  end

  describe "dependencies and package" do
    test "Plug and telemetry are optional Hex deps when Hex is there" do
      deps = Crier.MixProject.deps(nil, true)
      assert {:plug, _, opts} = List.keyfind(deps, :plug, 0)
      assert opts[:optional]
      assert {:telemetry, _, opts} = List.keyfind(deps, :telemetry, 0)
      assert opts[:optional]
    end

    test "without Hex, no deps unless CRIER_PLUG_PATH gives path deps" do
      assert Crier.MixProject.deps(nil, false) == []
      deps = Crier.MixProject.deps("/some/where", false)
      assert {:plug, path: "/some/where/plug", override: true} in deps
    end

    test "the package names its license and every file it carries exists" do
      package = Mix.Project.config()[:package]
      assert package[:licenses] == ["Apache-2.0"]
      assert is_binary(Mix.Project.config()[:description])

      for file <- package[:files] do
        assert File.exists?(Path.join(@root, file)), "#{file} is in the package but missing"
      end

      assert File.read!(Path.join(@root, "LICENSE")) =~ "Apache License"
      assert File.read!(Path.join(@root, "CHANGELOG.md")) =~ "0.1.0"
    end
  end
end
