defmodule Crier.Test.DemoRunner do
  @moduledoc """
  Runs `examples/demo.exs` the way `make demo` does (`mix run`, on a free port), as an OS
  process of its own, and reads its output line by line: the URL it prints and the log
  lines of its handler (`stream N opened by ...`, `stream N closed: REASON`).

  Also starts other OS programs (curl, chromium) in a session of their own, so a test can
  kill one with everything it spawned.
  """

  defstruct [:port, :pgid, :url]

  @type t :: %__MODULE__{port: port(), pgid: pos_integer(), url: String.t()}

  @root Path.expand("../..", __DIR__)

  @doc "Starts the demo and waits for its URL."
  @spec start([{charlist(), charlist()}]) :: t()
  def start(env \\ []) do
    mix = System.find_executable("mix") || raise "mix is not on the PATH"
    # --no-compile: the test run has compiled everything already, and a second cargo build
    # would only wait for the first one's lock.
    {port, pgid} =
      spawn_program(mix, ~w(run --no-compile examples/demo.exs), env: [{~c"PORT", ~c"0"} | env])

    demo = %__MODULE__{port: port, pgid: pgid}
    [url] = wait_line(demo, ~r{Crier demo on (https?://\S+/)}, 60_000)
    %{demo | url: url}
  end

  @doc """
  Kills the demo. With SIGKILL: a graceful stop would log to a stdout nobody may read any
  more (the test process that owned the port is gone), and could hang on it.
  """
  @spec stop(t()) :: :ok
  def stop(%__MODULE__{port: port, pgid: pgid}), do: kill(port, pgid, "KILL")

  @doc """
  Waits for an output line of `demo` matching `regex` and returns its captures; other lines
  are skipped. Fails after `timeout` ms.
  """
  @spec wait_line(t() | port(), Regex.t(), non_neg_integer()) :: [String.t()]
  def wait_line(%__MODULE__{port: port}, regex, timeout), do: wait_line(port, regex, timeout)

  def wait_line(port, regex, timeout) when is_port(port) do
    deadline = System.monotonic_time(:millisecond) + timeout
    wait(port, regex, deadline)
  end

  defp wait(port, regex, deadline) do
    left = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {^port, {:data, {:eol, line}}} ->
        case Regex.run(regex, line, capture: :all_but_first) do
          nil -> wait(port, regex, deadline)
          captures -> captures
        end

      {^port, {:data, {:noeol, _part}}} ->
        wait(port, regex, deadline)

      {^port, {:exit_status, status}} ->
        ExUnit.Assertions.flunk("the program exited (#{status}) before #{inspect(regex)}")
    after
      left -> ExUnit.Assertions.flunk("no line matching #{inspect(regex)} in time")
    end
  end

  @doc """
  Starts `program` with `args` in a new session (its own process group), output and errors
  read as lines. Returns the port and the process group id, for `kill/3`. Options: `:env`.
  """
  @spec spawn_program(String.t(), [String.t()], keyword()) :: {port(), pos_integer()}
  def spawn_program(program, args, opts \\ []) do
    setsid = System.find_executable("setsid") || raise "setsid is not installed"

    # setsid forks when it leads a process group already, so its own pid says nothing: the
    # shell it starts leads the new session, tells its pid (the group id), then becomes the
    # program.
    port =
      Port.open({:spawn_executable, setsid}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 1_000_000},
        cd: @root,
        env: Keyword.get(opts, :env, []),
        args: ["-w", "/bin/sh", "-c", ~s(echo "crier-pgid $$"; exec "$0" "$@"), program | args]
      ])

    [pgid] = wait_line(port, ~r/\Acrier-pgid (\d+)\z/, 10_000)
    {port, String.to_integer(pgid)}
  end

  @doc "Sends `signal` to the program's whole process group and closes the port."
  @spec kill(port(), pos_integer(), String.t()) :: :ok
  def kill(port, pgid, signal) do
    System.cmd("kill", ["-#{signal}", "--", "-#{pgid}"], stderr_to_stdout: true)

    try do
      Port.close(port)
    rescue
      ArgumentError -> :ok
    end

    :ok
  end
end
