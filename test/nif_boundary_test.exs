defmodule Crier.NifBoundaryTest do
  @moduledoc """
  The promises of the NIF boundary on legal and illegal input: improper lists and wrong
  types raise `ArgumentError` (never `:nif_panicked`, never `FunctionClauseError` where the
  docs promise `ArgumentError`), and large legal arguments hold no normal scheduler for a
  millisecond or more, as the VM's `long_schedule` monitor sees it.
  """
  # Not async: the long_schedule monitor is VM-wide, and a loaded machine makes noise.
  use ExUnit.Case, async: false

  alias Crier.{Conn, Native}
  alias Crier.Test.{ControlHandler, RawClient, Server}

  @big 32 * 1024 * 1024

  setup context do
    Server.start!(context, handler: {ControlHandler, test: self()})
  end

  # Opens a request and returns its handler's pid and conn; with `sse?` the response is an
  # SSE stream already.
  defp open(port, sse? \\ false) do
    client = RawClient.connect(port)
    :ok = RawClient.get(client, "/")
    assert_receive {:called, pid, _conn}

    if sse? do
      {:ok, _} = ControlHandler.run(pid, &Crier.sse/1)
      {:ok, _} = RawClient.read_until(client, "\r\n\r\n")
    end

    conn = ControlHandler.run(pid, & &1)
    {client, pid, conn}
  end

  describe "improper lists and wrong types" do
    test "subscribe/3 raises ArgumentError for an improper list of topics", %{port: port} do
      {_client, pid, _conn} = open(port, true)

      for topics <- [["a" | :b], ["a", "b" | "c"], [:a], 5, %{}] do
        assert %ArgumentError{} =
                 ControlHandler.run(pid, &catch_raise(fn -> Crier.subscribe(&1, topics) end))
      end
    end

    test "header lists, improper or not lists, raise ArgumentError", %{port: port} do
      {_client, pid, _conn} = open(port)

      for headers <- [[{"a", "b"} | :x], [{"a", "b"} | {"c", "d"}], [{"a"}], :x] do
        for call <- [
              &Conn.send_resp(&1, 200, headers, ""),
              &Conn.send_chunked(&1, 200, headers),
              &Conn.send_head(&1, 200, headers, 0),
              &Conn.inform(&1, 103, headers)
            ] do
          assert %ArgumentError{} = ControlHandler.run(pid, &catch_raise(fn -> call.(&1) end))
        end
      end

      # The conn is still usable after every refusal.
      assert {:ok, _} = ControlHandler.run(pid, &Conn.send_resp(&1, 200, [], "fine"))
    end

    test "the NIFs refuse improper lists with an argument error, never a panic", %{port: port} do
      {_client, _pid, conn} = open(port, true)
      improper_headers = [{"a", "b"} | :x]

      for call <- [
            fn -> Native.conn_subscribe(conn.resource, ["a" | :b], nil) end,
            fn -> Native.conn_send_chunked(conn.resource, 200, improper_headers, true) end,
            fn -> Native.conn_send_resp(conn.resource, 200, improper_headers, "") end,
            fn -> Native.conn_send_head(conn.resource, 200, improper_headers, 0) end,
            fn -> Native.conn_inform(conn.resource, 103, improper_headers) end
          ] do
        assert {:error, {:argument, message}} = call.()
        assert is_binary(message)
      end
    end

    test "subscribers/2, broadcast/3 and set_replay/3 raise ArgumentError for bad topics",
         %{server: server} do
      for topic <- [<<255>>, :atom, 5] do
        assert_raise ArgumentError, fn -> Crier.subscribers(server, topic) end
        assert_raise ArgumentError, fn -> Crier.broadcast(server, topic, %Crier.Event{}) end
        assert_raise ArgumentError, fn -> Crier.set_replay(server, topic, 1) end
      end

      assert_raise ArgumentError, fn -> Crier.set_replay(server, "t", -1) end
      assert_raise ArgumentError, fn -> Crier.broadcast(server, "t", :not_an_event) end
    end

    test "conn functions raise ArgumentError for arguments the docs refuse", %{port: port} do
      {_client, pid, _conn} = open(port)

      for call <- [
            &Conn.send_head(&1, 200, [], -1),
            &Conn.send_head(&1, 200, [], :ten),
            &Conn.on_close(&1, :bogus),
            &Crier.sse(&1, headers: [{"a", "b"} | :x])
          ] do
        assert %ArgumentError{} = ControlHandler.run(pid, &catch_raise(fn -> call.(&1) end))
      end
    end
  end

  describe "no normal scheduler held for 1 ms" do
    @describetag timeout: 120_000

    test "broadcast/3 of a 32 MiB event", %{server: server} do
      event = %Crier.Event{data: :binary.copy("d", @big)}

      assert_no_long_schedule(fn ->
        {:spawn, fn -> :ok = Crier.broadcast(server, "big", event) end}
      end)
    end

    test "Crier.Event.encode/1 of a 32 MiB event" do
      event = %Crier.Event{data: :binary.copy("d", @big)}
      assert_no_long_schedule(fn -> {:spawn, fn -> Crier.Event.encode(event) end} end)
    end

    test "subscribe/3 to 20,000 topics", %{port: port, server: server} do
      topics = for i <- 1..20_000, do: "topic-#{i}"

      assert_no_long_schedule(fn ->
        {_client, pid, _conn} = open(port, true)
        {:handler, pid, fn conn -> :ok = Crier.subscribe(conn, topics) end}
      end)

      Crier.Test.Wait.until(fn -> Crier.subscribers(server, "topic-20000") >= 1 end)
    end

    # Requests are turned into terms on the dispatcher's scheduler (Crier.Dispatcher): one
    # with this many headers is taken on a dirty scheduler, and a batch never holds more.
    @tag server_opts: [max_headers: 5_000, max_header_bytes: 4_194_304, dispatchers: 1]
    test "requests of 5,000 headers each, all for one dispatcher", %{port: port, server: name} do
      headers = for i <- 1..4_999, do: {"x-h#{i}", "v"}
      [dispatcher] = Crier.Test.Server.dispatchers(name)

      assert_no_long_schedule(fn ->
        {:watch, dispatcher,
         fn ->
           for _ <- 1..20 do
             client = RawClient.connect(port)
             :ok = RawClient.get(client, "/", headers)
           end

           for _ <- 1..20, do: assert_receive({:called, _pid, %Conn{}}, 10_000)
         end}
      end)
    end

    test "send_resp/4 with 100,000 headers", %{port: port} do
      headers = for i <- 1..100_000, do: {"x-h#{i}", "v"}

      assert_no_long_schedule(fn ->
        {_client, pid, _conn} = open(port)
        {:handler, pid, fn conn -> {:ok, _} = Conn.send_resp(conn, 200, headers, "ok") end}
      end)
    end
  end

  defp catch_raise(fun) do
    fun.()
  rescue
    error -> error
  end

  # Calls `setup` for what to run: `{:spawn, fun}` runs `fun` in a fresh process,
  # `{:handler, pid, fun}` runs `fun.(conn)` in handler `pid`, `{:watch, pid, fun}` runs `fun`
  # here and watches `pid`; it runs with the long_schedule monitor at 1 ms, and asserts no
  # report names that process. The machine is shared and loaded: the OS can stall a
  # scheduler thread for a millisecond now and then, so a run with a report is tried again,
  # up to three times; a NIF that holds the scheduler is reported on every run.
  defp assert_no_long_schedule(setup, tries \\ 3) do
    reports = long_schedules(setup.())

    cond do
      reports == [] -> :ok
      tries > 1 -> assert_no_long_schedule(setup, tries - 1)
      true -> flunk("long schedules on every run, the last: #{inspect(reports)}")
    end
  end

  defp long_schedules(what) do
    {runner, run} =
      case what do
        {:handler, pid, fun} ->
          {pid, fn -> run_in_handler(pid, fun) end}

        {:spawn, fun} ->
          spawn_runner(fun)

        {:watch, pid, fun} ->
          {pid,
           fn ->
             fun.()
             await_waiting(pid)
           end}
      end

    previous = :erlang.system_monitor(self(), [{:long_schedule, 1}])

    try do
      run.()
      # The report may reach the mailbox a little after the runner was scheduled out.
      receive do
        {:monitor, ^runner, :long_schedule, info} -> [info]
      after
        500 -> []
      end
    after
      :erlang.system_monitor(previous)
      Crier.Test.FunHandler.flush_mailbox()
    end
  end

  # The VM reports a long schedule when the process is scheduled out, which an exit is not:
  # after the call, each runner waits in a `receive`, and the test sees it waiting (so
  # scheduled out, and reported) before it reads the reports.
  defp run_in_handler(pid, fun) do
    ControlHandler.run(pid, fun, 60_000)
    await_waiting(pid)
  end

  defp await_waiting(pid) do
    Crier.Test.Wait.until(
      fn -> Process.info(pid, :status) == {:status, :waiting} end,
      5_000,
      "the runner did not wait",
      1
    )
  end

  # A process that waits for :go, runs `call`, reports :done and waits for :exit.
  defp spawn_runner(call) do
    test = self()

    pid =
      spawn(fn ->
        receive do
          :go -> :ok
        end

        call.()
        send(test, {:done, self()})

        receive do
          :exit -> :ok
        end
      end)

    {pid,
     fn ->
       ref = Process.monitor(pid)
       send(pid, :go)
       assert_receive {:done, ^pid}, 60_000
       await_waiting(pid)
       send(pid, :exit)
       assert_receive {:DOWN, ^ref, :process, ^pid, _}
     end}
  end
end
