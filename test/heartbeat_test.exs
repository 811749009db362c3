defmodule Crier.HeartbeatTest do
  @moduledoc """
  Heartbeats on the wire: an idle SSE stream gets `:` comment lines every `:heartbeat` ms,
  a stream that is written to often enough gets none, `heartbeat: nil` turns them off, and
  only SSE streams get them.
  """
  # Not async: run alone, so neither timing-sensitive tests here nor elsewhere share the cores.
  use ExUnit.Case, async: false

  alias Crier.Conn
  alias Crier.Test.{FunHandler, RawClient}

  # One heartbeat, framed as a chunk: ":\n\n" is 3 bytes.
  @framed_heartbeat "3\r\n:\n\n\r\n"

  defp idle_stream(start, server_opts) do
    test = self()

    {_name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = start.(conn)
          send(test, :streaming)
          ref = conn.ref

          receive do
            {:crier, ^ref, {:error, _}} -> :ok
          end
        end,
        server_opts
      )

    port
  end

  defp open(port, request \\ "GET / HTTP/1.1\r\nhost: x\r\n\r\n") do
    client = RawClient.connect(port)
    :ok = :gen_tcp.send(client, request)
    {:ok, data} = RawClient.read_until(client, "\r\n\r\n")
    [_head, body] = :binary.split(data, "\r\n\r\n")
    {client, body}
  end

  test "an idle SSE stream gets heartbeat comment lines, and nothing else, on the wire" do
    port = idle_stream(&Crier.sse/1, heartbeat: 50)
    {client, body} = open(port)
    assert_receive :streaming, 5_000

    expected = String.duplicate(@framed_heartbeat, 3)
    {:ok, body} = RawClient.read_until(client, expected, 5_000, body)
    # Only whole heartbeats: the body is a run of them.
    assert String.replace(body, @framed_heartbeat, "") == ""
    :gen_tcp.close(client)
  end

  test "an HTTP/1.0 SSE stream gets bare heartbeat lines (no chunk framing)" do
    port = idle_stream(&Crier.sse/1, heartbeat: 50)
    {client, body} = open(port, "GET / HTTP/1.0\r\n\r\n")
    assert_receive :streaming, 5_000

    {:ok, body} = RawClient.read_until(client, ":\n\n:\n\n", 5_000, body)
    assert String.replace(body, ":\n\n", "") == ""
    :gen_tcp.close(client)
  end

  test "a stream written to more often than the heartbeat interval gets no heartbeat" do
    test = self()
    event = IO.iodata_to_binary(Crier.Event.encode(%Crier.Event{data: "tick"}))
    interval = 250

    {_name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Crier.sse(conn)

          # Six intervals' worth of events, one every tenth of an interval: a heartbeat that
          # ignored the writes would come about six times.
          {conn, sent_at} =
            Enum.reduce(1..60, {conn, [now()]}, fn _, {conn, sent_at} ->
              receive do
              after
                25 -> :ok
              end

              {:ok, conn} = Crier.send_event(conn, %Crier.Event{data: "tick"})
              {conn, [now() | sent_at]}
            end)

          send(test, {:done, sent_at})
          conn
        end,
        heartbeat: interval
      )

    {client, body} = open(port)
    assert_receive {:done, sent_at}, 10_000
    {:ok, data} = RawClient.read_until(client, "\r\n0\r\n\r\n", 5_000, body)
    {body, true} = RawClient.dechunk(data)
    assert String.replace(body, ":\n\n", "") == String.duplicate(event, 60)
    heartbeats = length(:binary.matches(body, ":\n\n"))

    # Only a gap the owner's own scheduling opened (more than half an interval between two
    # of its writes, on a loaded machine) may let one through.
    hiccups =
      sent_at
      |> Enum.chunk_every(2, 1, :discard)
      |> Enum.count(fn [later, earlier] -> later - earlier > div(interval, 2) end)

    assert heartbeats <= hiccups, "#{heartbeats} heartbeats, #{hiccups} slow writes"
    :gen_tcp.close(client)
  end

  defp now, do: System.monotonic_time(:millisecond)

  # Telling `nil` from the 15 s default on the wire takes an interval of the default; the
  # engine's side is proven on a paused clock in `conn_lifecycle.rs`
  # (no_heartbeat_means_none_ever_and_the_default_sends_one). Here: `nil` reaches the engine
  # as `nil` (which the NIF reads as no heartbeat) rather than being dropped for the default,
  # and a stream then stays silent for several of the intervals other tests use.
  test "heartbeat: nil sends none" do
    assert %{native: %{heartbeat: nil}} =
             Crier.Options.validate!(name: :nil_heartbeat, handler: FunHandler, heartbeat: nil)

    # Every option reaches the engine, so the default arrives as its 15 s, not as nil.
    assert %{native: %{heartbeat: 15_000}} =
             Crier.Options.validate!(name: :default_heartbeat, handler: FunHandler)

    port = idle_stream(&Crier.sse/1, heartbeat: nil)
    {client, body} = open(port)
    assert_receive :streaming, 5_000
    assert body == ""
    assert {:timeout, ""} = RawClient.read_until(client, ":", 300)
    :gen_tcp.close(client)
  end

  test "timer options are positive or nil: heartbeat: 0 would never pause" do
    for {key, value} <- [heartbeat: 0, heartbeat: -5, tcp_keepalive: 0, tcp_user_timeout: 1.5] do
      assert_raise ArgumentError, ~r/#{key}/, fn ->
        Crier.child_spec([{:name, :bad_timer}, {:handler, FunHandler}, {key, value}])
      end
    end

    for {key, value} <- [send_timeout: -1, shutdown_timeout: :never, write_queue_bytes: 0] do
      assert_raise ArgumentError, ~r/#{key}/, fn ->
        Crier.child_spec([{:name, :bad_timer}, {:handler, FunHandler}, {key, value}])
      end
    end

    assert %{} = Crier.child_spec(name: :ok_timer, handler: FunHandler, heartbeat: nil)
  end

  test "a chunked response that is not SSE gets no heartbeat" do
    port = idle_stream(&Conn.send_chunked(&1, 200, []), heartbeat: 50)
    {client, body} = open(port)
    assert_receive :streaming, 5_000
    assert body == ""
    assert {:timeout, ""} = RawClient.read_until(client, ":", 300)
    :gen_tcp.close(client)
  end
end
