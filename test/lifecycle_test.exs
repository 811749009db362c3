defmodule Crier.LifecycleTest do
  @moduledoc """
  A Crier server as a citizen of a supervision tree: it survives messages it does not
  expect, restarts on the same port at once after a kill (the Rust listener closes when its
  owner dies), and takes its request processes with it when it stops.
  """
  # Not async: these tests kill servers and reuse fixed ports.
  use ExUnit.Case, async: false

  alias Crier.Test.{FunHandler, RawClient, SseClient, Wait}

  # A handler that opens an SSE stream, reports `{:owner, pid}`, then sends one event per
  # `:tick` it is sent and forwards Crier's messages to the test.
  defp ticking_owner(test) do
    fn conn ->
      {:ok, conn} = Crier.sse(conn)
      send(test, {:owner, self()})
      tick(conn, test)
    end
  end

  defp tick(conn, test) do
    ref = conn.ref

    receive do
      :tick ->
        {:ok, conn} = Crier.send_event(conn, %Crier.Event{data: "tick"})
        tick(conn, test)

      {:crier, ^ref, message} ->
        send(test, {:owner_got, message})
        tick(conn, test)
    end
  end

  # Every process of the server's tree: the supervisor above the process registered under
  # its name (the process itself when there is none) and all its descendants.
  defp tree(name) do
    registered = Process.whereis(name)
    {:dictionary, dictionary} = Process.info(registered, :dictionary)

    case dictionary[:"$ancestors"] do
      [parent | _] when is_pid(parent) ->
        if server_supervisor?(parent), do: descendants(parent), else: [registered]

      _ ->
        [registered]
    end
  end

  defp server_supervisor?(pid) do
    {:dictionary, dictionary} = Process.info(pid, :dictionary)
    match?({:supervisor, Crier.Server, _}, dictionary[:"$initial_call"])
  end

  defp descendants(pid) do
    children =
      if supervisor?(pid) do
        for {_, child, _, _} <- Supervisor.which_children(pid),
            is_pid(child),
            do: descendants(child)
      else
        []
      end

    [pid | List.flatten(children)]
  end

  defp supervisor?(pid) do
    {:dictionary, dictionary} = Process.info(pid, :dictionary)
    match?({:supervisor, _, _}, dictionary[:"$initial_call"])
  end

  defp free_port do
    {:ok, socket} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(socket)
    :gen_tcp.close(socket)
    port
  end

  describe "stray messages" do
    test "a message, cast or call no process of the server expects ends no stream" do
      test = self()
      {name, port} = FunHandler.start_server(ticking_owner(test))
      client = SseClient.connect(port, "/")
      assert_receive {:owner, owner}

      processes = tree(name)
      assert length(processes) > 1, "no tree around #{inspect(name)}"

      for pid <- processes do
        send(pid, :hello)
        send(pid, {:crier_request, :not_a_resource, :not_a_request})
        # Shaped like a dispatcher's order to end an owner: only its relay may give one.
        send(pid, {:crier_exit, owner, 0, :closed})
        unless supervisor?(pid), do: GenServer.cast(pid, :hello)
      end

      assert {:error, _} = GenServer.call(name, :hello)

      # A request that reached a handler after the strays proves each mailbox was read past
      # them; the first stream must still carry events.
      second = SseClient.connect(port, "/")
      assert second.status == 200
      assert_receive {:owner, _second_owner}
      send(owner, :tick)
      assert {:ok, %{data: "tick"}, _client} = SseClient.next_event(client, 5_000)
      refute_received {:owner_got, _}
      assert Process.alive?(owner)
    end
  end

  describe "a killed server" do
    setup do
      port = free_port()
      name = :"crier_lifecycle_#{System.unique_integer([:positive])}"
      test = self()

      start_supervised!(
        {Crier, name: name, port: port, handler: {FunHandler, ticking_owner(test)}}
      )

      %{name: name, port: port}
    end

    test "restarts on the same port at once, leaving no client unanswered", ctx do
      first = Process.whereis(ctx.name)
      assert 200 == SseClient.connect(ctx.port, "/").status
      assert_receive {:owner, _}

      # Clients keep connecting while the server is killed and restarted: each one is
      # answered, reset, closed or refused, never left waiting.
      prober = Task.async(fn -> probe(ctx.port, System.monotonic_time(:millisecond) + 1_500) end)
      Process.exit(first, :kill)

      Wait.until(
        fn ->
          pid = Process.whereis(ctx.name)
          pid != nil and pid != first
        end,
        5_000,
        "the server was not restarted"
      )

      outcomes = Task.await(prober, 30_000)
      assert :hung not in outcomes, "a client was left waiting: #{inspect(outcomes)}"

      # The new incarnation serves on the same port.
      client = SseClient.connect(ctx.port, "/")
      assert client.status == 200
      assert_receive {:owner, _}
    end

    test "a new incarnation serves while the killed one still drains a slow client", ctx do
      # The setup's server is replaced by one whose drain a client that never reads keeps
      # busy; its supervisor is killed, so its listener drains while the restart happens.
      stop_supervised!({Crier, ctx.name})
      test = self()
      chunk = String.duplicate("z", 64 * 1024)

      start_supervised!(
        {Crier,
         name: ctx.name,
         port: ctx.port,
         shutdown_timeout: 3_000,
         write_queue_bytes: 64 * 1024 * 1024,
         handler:
           {FunHandler,
            fn conn ->
              {:ok, conn} = Crier.sse(conn)
              for _ <- 1..128, do: {:ok, _} = Crier.Conn.chunk(conn, chunk)
              send(test, :queued)
              Process.sleep(:infinity)
            end}}
      )

      {:ok, slow} =
        :gen_tcp.connect({127, 0, 0, 1}, ctx.port, [:binary, active: false, recbuf: 4096])

      :ok = RawClient.get(slow, "/")
      assert_receive :queued
      listener = Process.whereis(ctx.name)
      [top | _] = tree(ctx.name)
      Process.exit(top, :kill)

      Wait.until(
        fn ->
          pid = Process.whereis(ctx.name)
          pid != nil and pid != listener
        end,
        2_000,
        "no new incarnation while the old one drains"
      )

      # The old listener is still draining its slow client, and the new one serves.
      assert Process.alive?(listener)
      client = RawClient.connect(ctx.port)
      :ok = RawClient.get(client, "/")
      assert {:ok, _} = RawClient.read_until(client, "200 OK")
      :gen_tcp.close(slow)
    end

    test "a second server under a live one's name is refused and leaves it serving", ctx do
      Process.flag(:trap_exit, true)
      other_port = free_port()
      opts = [name: ctx.name, port: other_port, handler: FunHandler]
      assert {:error, {:already_started, _}} = Crier.start_link(opts)
      # The live server's listener was not stopped as a "previous incarnation".
      client = SseClient.connect(ctx.port, "/")
      assert client.status == 200
    end

    test "a killed listener closes its port before the new one binds", ctx do
      # Kill every process of the tree but the top one (the listener among them): the tree
      # restarts what it must, on the same port.
      [top | below] = tree(ctx.name)
      assert below != [], "no tree around #{inspect(ctx.name)}"
      assert supervisor?(top)
      Enum.each(below, &Process.exit(&1, :kill))

      Wait.until(
        fn ->
          case :gen_tcp.connect({127, 0, 0, 1}, ctx.port, [:binary, active: false], 1_000) do
            {:ok, socket} ->
              # The dying listener's backlog may take the connection and close it: not yet.
              answered =
                RawClient.get(socket, "/") == :ok and
                  match?({:ok, _}, RawClient.read_until(socket, "200 OK", 2_000))

              :gen_tcp.close(socket)
              answered

            {:error, _} ->
              false
          end
        end,
        5_000,
        "the server did not serve again on its port"
      )
    end
  end

  describe "the Rust server alone" do
    defp native_options,
      do: Crier.Options.validate!(name: :lifecycle, handler: FunHandler, port: 0).native

    defp refused?(port) do
      match?(
        {:error, :econnrefused},
        :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 1_000)
      )
    end

    test "stops listening when its owner dies, with no new incarnation to do it" do
      owner =
        spawn(fn ->
          receive do
            :exit -> :ok
          end
        end)

      {:ok, relay} = Crier.Native.relay_open()
      {:ok, server} = Crier.Native.server_start(native_options(), owner, [relay])
      port = Crier.Native.server_port(server)
      refute refused?(port)
      Process.exit(owner, :kill)
      Wait.until(fn -> refused?(port) end, 5_000, "the listener outlived its owner")
    end

    test "a request queued for a dispatcher that dies untaken is answered" do
      test = self()

      dispatcher =
        spawn(fn ->
          {:ok, relay} = Crier.Native.relay_open()
          send(test, {:relay, relay})

          receive do
            :never -> :ok
          end
        end)

      assert_receive {:relay, relay}
      {:ok, server} = Crier.Native.server_start(native_options(), test, [relay])
      client = Crier.Test.RawClient.connect(Crier.Native.server_port(server))
      :ok = Crier.Test.RawClient.get(client, "/")
      # Whether the request was queued before the death or comes after it, the relay's
      # monitor drops it and its exchange closes as owner_gone: a 500, then the close.
      Process.exit(dispatcher, :kill)
      assert {:closed, response} = Crier.Test.RawClient.read_to_close(client, 5_000)
      assert response =~ ~r/\AHTTP\/1.1 500 /
      Crier.Native.server_shutdown(server, nil)
    end

    test "stops listening when its last reference goes" do
      test = self()

      holder =
        spawn(fn ->
          {:ok, relay} = Crier.Native.relay_open()
          {:ok, server} = Crier.Native.server_start(native_options(), test, [relay])
          send(test, {:port, Crier.Native.server_port(server)})
        end)

      assert_receive {:port, port}
      ref = Process.monitor(holder)
      assert_receive {:DOWN, ^ref, :process, ^holder, _}
      # This process saw the resource only as a port number; nothing else holds it.
      Wait.until(fn -> refused?(port) end, 5_000, "the listener outlived its last reference")
    end
  end

  # Opens one connection after another until `deadline`: each sends a GET and must get an
  # answer, a close or a reset within 5 s (or be refused while nothing listens).
  defp probe(port, deadline) do
    if System.monotonic_time(:millisecond) > deadline do
      []
    else
      outcome =
        case :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 1_000) do
          {:ok, socket} ->
            _ = RawClient.get(socket, "/")

            result =
              case :gen_tcp.recv(socket, 0, 5_000) do
                {:ok, _data} -> :answered
                {:error, :timeout} -> :hung
                {:error, _closed_or_reset} -> :closed
              end

            :gen_tcp.close(socket)
            result

          {:error, _refused} ->
            :refused
        end

      [outcome | probe(port, deadline)]
    end
  end

  describe "request processes" do
    test "are gone once the server has stopped" do
      test = self()
      {name, port} = FunHandler.start_server(ticking_owner(test), shutdown_timeout: 100)

      owners =
        for _ <- 1..5 do
          SseClient.connect(port, "/")
          assert_receive {:owner, owner}
          owner
        end

      # A handler that ignores the shutdown notice (it keeps looping) must still end with
      # its server.
      assert Enum.all?(owners, &Process.alive?/1)
      stop_supervised!({Crier, name})
      alive = Enum.filter(owners, &Process.alive?/1)
      assert alive == [], "request processes outlived their server: #{inspect(alive)}"
    end

    test "belong to the server's tree: they are linked into it" do
      test = self()
      {name, port} = FunHandler.start_server(ticking_owner(test))
      SseClient.connect(port, "/")
      assert_receive {:owner, owner}
      tree = tree(name)
      {:links, links} = Process.info(owner, :links)
      assert Enum.any?(links, &(&1 in tree)), "the request process is linked to no server process"
    end
  end
end
