defmodule Crier.OwnersTest do
  @moduledoc """
  Owners of streams: how they are told of a close (`on_close: :message` or `:exit`, per
  server and per stream), and what their death does to their streams (closes them, unless
  they are subscribed to a topic).
  """
  # Not async: run alone, so neither timing-sensitive tests here nor elsewhere share the cores.
  use ExUnit.Case, async: false

  alias Crier.Conn
  alias Crier.Test.{FunHandler, RawClient, Wait}

  # A handler that starts an SSE stream (with `sse_opts`), reports itself, and then waits
  # for the close message, forwarding it (and anything after it) to the test.
  defp waiting_owner(sse_opts \\ [], before_wait \\ fn conn -> conn end) do
    test = self()

    fn conn ->
      {:ok, conn} = Crier.sse(conn, sse_opts)
      conn = before_wait.(conn)
      watch_owner(test)
      send(test, {:owner, self(), conn.ref})
      forward(conn.ref, test)
    end
  end

  # Reports how the calling process ends as {:owner_down, pid, reason}; the monitor is in
  # place before this returns, so no end goes unseen.
  defp watch_owner(test) do
    owner = self()

    watcher =
      spawn(fn ->
        ref = Process.monitor(owner)
        send(owner, {:watching, self()})

        receive do
          {:DOWN, ^ref, :process, ^owner, reason} -> send(test, {:owner_down, owner, reason})
        end
      end)

    receive do
      {:watching, ^watcher} -> :ok
    end
  end

  defp forward(ref, test) do
    receive do
      {:crier, ^ref, message} ->
        send(test, {:owner_got, message})
        forward(ref, test)
    end
  end

  defp open_stream(port) do
    client = RawClient.connect(port)
    :ok = RawClient.get(client, "/")
    {:ok, _} = RawClient.read_until(client, "\r\n\r\n")
    client
  end

  describe "on_close: :message" do
    test "is the handler default: the owner gets {:error, :closed} once when the client leaves" do
      {_name, port} = FunHandler.start_server(waiting_owner())
      client = open_stream(port)
      assert_receive {:owner, owner, _ref}, 5_000

      :gen_tcp.close(client)
      assert_receive {:owner_got, {:error, :closed}}, 5_000
      refute_receive {:owner_got, _}, 200
      refute_received {:owner_down, ^owner, _}
    end

    test "chosen for one stream on an :exit server" do
      {_name, port} = FunHandler.start_server(waiting_owner(on_close: :message), on_close: :exit)

      client = open_stream(port)
      assert_receive {:owner, owner, _ref}, 5_000

      :gen_tcp.close(client)
      assert_receive {:owner_got, {:error, :closed}}, 5_000
      refute_received {:owner_down, ^owner, _}
    end
  end

  describe "on_close: :exit" do
    test "per server: the owner ends with {:shutdown, :closed}" do
      {_name, port} = FunHandler.start_server(waiting_owner(), on_close: :exit)
      client = open_stream(port)
      assert_receive {:owner, owner, _ref}, 5_000

      RawClient.reset(client)
      assert_receive {:owner_down, ^owner, {:shutdown, :closed}}, 5_000
      refute_received {:owner_got, _}
    end

    test "per stream, with Crier.sse/2's option or Crier.Conn.on_close/2" do
      {_name, port} = FunHandler.start_server(waiting_owner(on_close: :exit))
      client = open_stream(port)
      assert_receive {:owner, owner, _ref}, 5_000
      :gen_tcp.close(client)
      assert_receive {:owner_down, ^owner, {:shutdown, :closed}}, 5_000

      {_name, port} =
        FunHandler.start_server(
          waiting_owner([], fn conn ->
            :ok = Conn.on_close(conn, :exit)
            conn
          end)
        )

      client = open_stream(port)
      assert_receive {:owner, owner, _ref}, 5_000
      :gen_tcp.close(client)
      assert_receive {:owner_down, ^owner, {:shutdown, :closed}}, 5_000
    end

    test "anything but :message or :exit is refused" do
      test = self()

      {_name, port} =
        FunHandler.start_server(fn conn ->
          send(test, {:raised, catch_error(Conn.on_close(conn, :kill))})
          Conn.send_resp(conn, 204, [], "")
        end)

      client = open_stream(port)

      assert_receive {:raised,
                      %ArgumentError{message: "on_close must be :message or :exit" <> _}},
                     5_000

      :gen_tcp.close(client)
    end

    test "carries the reason: a stream closed by the owner's own Conn.close/1 ends it too" do
      test = self()

      {_name, port} =
        FunHandler.start_server(fn conn ->
          {:ok, conn} = Crier.sse(conn, on_close: :exit)
          watch_owner(test)
          send(test, {:owner, self()})

          receive do
            :close -> Conn.close(conn)
          end

          receive do
          after
            5_000 -> send(test, :still_alive)
          end
        end)

      client = open_stream(port)
      assert_receive {:owner, owner}, 5_000
      send(owner, :close)
      assert_receive {:owner_down, ^owner, {:shutdown, :closed}}, 5_000
      assert {:closed, _} = RawClient.read_to_close(client)
    end
  end

  describe "owner death" do
    test "closes a stream that is not subscribed: the client sees the body cut" do
      {name, port} =
        FunHandler.start_server(
          waiting_owner([], fn conn ->
            {:ok, conn} = Crier.send_event(conn, %Crier.Event{data: "before"})
            conn
          end)
        )

      client = RawClient.connect(port)
      :ok = RawClient.get(client, "/")
      assert_receive {:owner, owner, _ref}, 5_000
      Process.exit(owner, :kill)

      {:closed, response} = RawClient.read_to_close(client)
      {200, _headers, body} = RawClient.parse_response(response)
      assert {"data: before\n\n", false} = RawClient.dechunk(body)
      stats = Wait.until(fn -> (s = Crier.stats(name)) && s.connections == 0 && s end)
      assert stats.closes.owner_gone == 1
      assert stats.streams == 0
    end

    test "leaves a subscribed stream to live on in Rust" do
      topic = "owners-#{System.unique_integer([:positive])}"

      {name, port} =
        FunHandler.start_server(
          waiting_owner([], fn conn ->
            :ok = Crier.subscribe(conn, topic)
            conn
          end)
        )

      client = open_stream(port)
      assert_receive {:owner, owner, _ref}, 5_000
      Process.exit(owner, :kill)
      assert_receive {:owner_down, ^owner, :killed}, 5_000

      :ok = Crier.broadcast(name, topic, %Crier.Event{data: "still here"})
      assert {:ok, _} = RawClient.read_until(client, "data: still here\n\n")
      assert %{streams: 1, subscribers: 1} = Crier.stats(name)
      :gen_tcp.close(client)
    end
  end
end
