defmodule Crier.E2E.EventSourceTest do
  @moduledoc """
  A real SSE client, the npm `eventsource` package (a WHATWG `EventSource` for Node), reads
  Crier: multi-line and unicode data arrive framed as sent, and after the server drops the
  stream the client reconnects with `Last-Event-ID` and gets what it missed from the replay
  ring, with no loss and no duplicate. `make deps` installs the package; this test installs
  it too when it is missing.
  """
  use ExUnit.Case, async: true

  alias Crier.Event
  alias Crier.Test.TopicHandler

  @moduletag :e2e
  @e2e_dir Path.expand(__DIR__)

  setup_all do
    unless File.dir?(Path.join(@e2e_dir, "node_modules/eventsource")) do
      {out, status} =
        System.cmd("npm", ~w(ci --no-audit --no-fund --loglevel=error),
          cd: @e2e_dir,
          stderr_to_stdout: true
        )

      if status != 0, do: flunk("npm ci in test/e2e failed:\n#{out}")
    end

    :ok
  end

  setup do
    name = :"e2e_es_#{System.unique_integer([:positive])}"

    start_supervised!(
      {Crier, name: name, port: 0, handler: {TopicHandler, test: self(), retry: 100}}
    )

    %{server: name, port: Crier.port(name)}
  end

  test "multi-line and unicode data arrive as sent", %{server: server, port: port} do
    client = start_client("http://127.0.0.1:#{port}/topics/framing", 5, ["custom"])
    assert_receive {:detached, _handler, _ref}, 10_000
    assert next_line(client) == ["open"]

    events = [
      %Event{data: "line one\nline two\r\nline three\rline four"},
      %Event{id: "u1", event: "custom", data: "ünïcödé 日本語 😀 \u2028 end"},
      %Event{data: ""},
      %Event{data: "  two leading spaces, trailing newline\n"},
      %Event{comment: "a comment\nthe client never sees", data: "data: not a field"}
    ]

    for event <- events, do: :ok = Crier.broadcast(server, "framing", event)

    assert received(client, 5) == [
             {"message", "line one\nline two\nline three\nline four", ""},
             {"custom", "ünïcödé 日本語 😀 \u2028 end", "u1"},
             {"message", "", "u1"},
             {"message", "  two leading spaces, trailing newline\n", "u1"},
             {"message", "data: not a field", "u1"}
           ]

    assert next_line(client) == ["done"]
  end

  test "after the server drops it, the client reconnects with Last-Event-ID and misses nothing",
       %{server: server, port: port} do
    :ok = Crier.set_replay(server, "replay", 100)
    client = start_client("http://127.0.0.1:#{port}/topics/replay?keep", 9)
    assert_receive {:subscribed, handler, conn}, 10_000
    ref = conn.ref
    assert Crier.Conn.get_req_header(conn, "last-event-id") == []
    assert next_line(client) == ["open"]

    publish(server, 1..3)
    assert ids(received(client, 3)) == ~w(1 2 3)

    # The server drops the stream; events go on while the client is away.
    send(handler, :close)
    assert_receive {:crier_msg, ^handler, ^ref, {:error, :closed}}
    publish(server, 4..6)
    assert next_line(client) == ["error"]

    # It comes back (after the 100 ms retry the stream asked for) with the last id it saw.
    assert_receive {:subscribed, _handler2, conn2}, 10_000
    assert Crier.Conn.get_req_header(conn2, "last-event-id") == ["3"]
    assert next_line(client) == ["open"]
    assert ids(received(client, 3)) == ~w(4 5 6)

    publish(server, 7..9)
    assert ids(received(client, 3)) == ~w(7 8 9)
    assert next_line(client) == ["done"]
  end

  defp publish(server, range) do
    for n <- range, do: :ok = Crier.broadcast(server, "replay", %Event{data: "event #{n}"})
  end

  defp ids(events) do
    for {"message", data, id} <- events do
      assert data == "event #{id}"
      id
    end
  end

  defp start_client(url, count, types \\ []) do
    node = System.find_executable("node") || flunk("node is not installed")
    script = Path.join(@e2e_dir, "eventsource_client.mjs")

    Port.open({:spawn_executable, node}, [
      :binary,
      :exit_status,
      {:line, 1_000_000},
      cd: @e2e_dir,
      args: [script, url, Integer.to_string(count), Enum.join(types, ",")]
    ])
  end

  defp next_line(port) do
    receive do
      {^port, {:data, {:eol, line}}} -> String.split(line, "\t")
      {^port, {:exit_status, status}} -> flunk("the client exited with status #{status}")
    after
      10_000 -> flunk("no word from the client in time")
    end
  end

  defp received(port, n) do
    for _ <- 1..n do
      case next_line(port) do
        ["event", type, data, id] -> {type, Base.decode64!(data), Base.decode64!(id)}
        other -> flunk("expected an event, got #{inspect(other)}")
      end
    end
  end
end
