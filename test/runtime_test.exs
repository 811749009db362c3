defmodule Crier.RuntimeTest do
  @moduledoc "The tokio runtime is built once, on load, with its worker count from the app env."
  use ExUnit.Case, async: true

  test "by default the runtime has one worker per online core" do
    assert Crier.Native.runtime_workers() == System.schedulers_online()
  end

  test "the :worker_threads application env sets the worker count (in a fresh VM)" do
    ebin = Path.dirname(:code.which(Crier.Native))

    # The module is named through a variable so that compiling the script does not load it
    # (and build the runtime) before the env is set.
    script = """
    Application.put_env(:crier, :worker_threads, 3)
    native = Module.concat(Crier, Native)
    IO.puts("workers=" <> Integer.to_string(native.runtime_workers()))
    """

    {output, 0} = System.cmd("elixir", ["-pa", ebin, "-e", script], stderr_to_stdout: true)
    assert output =~ "workers=3"
  end
end
