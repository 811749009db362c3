defmodule Crier.SchedulerTest do
  @moduledoc """
  No NIF blocks a scheduler: 10,000 concurrent streams call `chunk/2` (through a small
  write queue, so many of them wait) while `:erlang.system_monitor/2` reports every
  process that held a scheduler for 5 ms or more; none of the reports may point at
  `Crier.Native`.

  The clients run in a VM of their own (`test/support/many_clients.exs`): one process may
  open at most 20,000 files, and 10,000 streams need 10,000 sockets on each side.
  """
  use ExUnit.Case, async: false

  alias Crier.Test.FunHandler

  @moduletag :load
  @moduletag timeout: 300_000

  @streams 10_000
  @events 20
  @event %Crier.Event{data: String.duplicate("s", 200)}

  test "10,000 streams doing chunk/2 hold no scheduler in a NIF" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Crier.sse(conn)
          send(test, {:ready, self()})

          receive do
            :go -> :ok
          end

          Enum.reduce(1..@events, conn, fn _, conn ->
            {:ok, conn} = Crier.send_event(conn, @event)
            conn
          end)
        end,
        # Two events' worth: chunk/2 often finds the queue full and waits.
        write_queue_bytes: 512,
        heartbeat: nil,
        send_timeout: 120_000
      )

    clients = start_clients(port)
    owners = for _ <- 1..@streams, do: receive_ready()
    assert_line(clients, "connected")
    assert Crier.stats(name).streams == @streams

    previous = :erlang.system_monitor(self(), [{:long_schedule, 5}])

    try do
      Enum.each(owners, &send(&1, :go))
      assert_line(clients, "done #{@streams} #{@streams * @events}")
    after
      :erlang.system_monitor(previous)
    end

    reports = for {:monitor, _who, :long_schedule, info} <- FunHandler.flush_mailbox(), do: info

    # A NIF does not yield, so one that blocked shows as the Elixir code around its call
    # (the process is scheduled in and out in Crier.Conn), never as Crier.Native itself: the
    # reports are counted around the calls. On a loaded 2-core machine the OS preempts a
    # scheduler thread now and then (measured: about 150 such reports for 200,000 chunks; a
    # plain BIF call stalls as long), while a NIF made to sleep 6 ms on one call in 50 gave
    # 5,700.
    around = Enum.count(reports, &points_at?(&1, [Crier.Native, Crier.Conn]))
    calls = @streams * @events

    assert around < div(calls, 100),
           "#{around} long schedules around Crier's NIFs for #{calls} chunk/2 calls"
  end

  defp start_clients(port) do
    script = Path.expand("support/many_clients.exs", __DIR__)

    # At the lowest CPU priority, so the clients' VM takes the cores only when the server's
    # threads leave them: fewer long schedules that are only the OS running someone else.
    Port.open({:spawn_executable, System.find_executable("nice")}, [
      :binary,
      :exit_status,
      {:line, 1024},
      args:
        ["-n", "19", System.find_executable("elixir"), script] ++
          [Integer.to_string(port), Integer.to_string(@streams)]
    ])
  end

  defp receive_ready do
    receive do
      {:ready, pid} -> pid
    after
      60_000 -> flunk("streams did not open in time")
    end
  end

  defp assert_line(port, expected) do
    receive do
      {^port, {:data, {:eol, ^expected}}} -> :ok
      {^port, {:data, {:eol, other}}} -> flunk("clients said #{inspect(other)}, not #{expected}")
      {^port, {:exit_status, status}} -> flunk("clients exited with #{status}")
    after
      120_000 -> flunk("clients did not say #{inspect(expected)} in time")
    end
  end

  defp points_at?(info, modules) do
    Enum.any?([info[:in], info[:out]], fn
      {module, _, _} -> module in modules
      _ -> false
    end)
  end
end
