defmodule Crier.SseTest do
  @moduledoc """
  Events on one stream: `Crier.sse/2` sends the head an event stream needs, `send_event/2`
  writes events encoded by the one Rust encoder, and events that would break the stream are
  refused with `ArgumentError`. Wire bytes are checked exactly.
  """
  use ExUnit.Case, async: true

  alias Crier.Event
  alias Crier.Test.{RawClient, Server, SseClient, TopicHandler}

  setup context do
    Server.start!(context, handler: {TopicHandler, test: self()})
  end

  defp open_plain(port, opts \\ []), do: TopicHandler.connect(port, "/plain", :plain, opts)

  # Opens a stream to /plain with a raw socket, to read its exact bytes; returns the socket and
  # the handler once it has started the stream.
  defp open_plain_raw(port) do
    raw = RawClient.connect(port)
    :ok = RawClient.get(raw, "/plain")
    assert_receive {:plain, handler, _conn}
    {raw, handler}
  end

  defp run(handler, fun) do
    send(handler, {:run, fun})
    assert_receive {:ran, ^handler, result}
    result
  end

  describe "Crier.Event.encode/1 (the Rust encoder)" do
    test "writes every field to the byte, comment first and data last" do
      assert Event.encode(%Event{
               comment: "c",
               id: "42",
               event: "update",
               retry: 3000,
               data: "hello"
             }) == ": c\nid: 42\nevent: update\nretry: 3000\ndata: hello\n\n"
    end

    test "splits data on CRLF, CR and LF, keeping empty lines" do
      assert Event.encode(%Event{data: "a\r\nb\rc\nd"}) ==
               "data: a\ndata: b\ndata: c\ndata: d\n\n"

      assert Event.encode(%Event{data: ""}) == "data: \n\n"
      assert Event.encode(%Event{data: "x\n"}) == "data: x\ndata: \n\n"
      assert Event.encode(%Event{data: "\n\nid: 1"}) == "data: \ndata: \ndata: id: 1\n\n"
    end

    test "passes UTF-8 through untouched" do
      assert Event.encode(%Event{id: "ід", event: "тик", data: "日本 😀"}) ==
               "id: ід\nevent: тик\ndata: 日本 😀\n\n"
    end

    test "accepts a plain map" do
      assert Event.encode(%{data: "x", id: "1"}) == "id: 1\ndata: x\n\n"
    end

    test "refuses ids with CR, LF or NUL and events with CR or LF" do
      for id <- ["a\nb", "a\rb", "a\r\nb", "a\0b"] do
        assert_raise ArgumentError, ~r/id must not contain CR, LF or NUL/, fn ->
          Event.encode(%Event{id: id, data: "x"})
        end
      end

      for name <- ["a\nb", "a\rb"] do
        assert_raise ArgumentError, ~r/event must not contain CR or LF/, fn ->
          Event.encode(%Event{event: name, data: "x"})
        end
      end
    end

    test "refuses a negative or non-integer retry" do
      for retry <- [-1, 1.5, "100"] do
        assert_raise ArgumentError, ~r/retry/, fn -> Event.encode(%Event{retry: retry}) end
      end
    end

    test "refuses invalid UTF-8 in any text field" do
      for field <- [:id, :event, :data, :comment] do
        assert_raise ArgumentError, ~r/UTF-8/, fn ->
          Event.encode(Map.put(%Event{}, field, <<0xFF, 0xFE>>))
        end
      end
    end
  end

  describe "Crier.sse/2" do
    test "sends the event-stream head, chunked", %{port: port} do
      {client, _handler, _conn} = open_plain(port)
      assert client.status == 200
      assert SseClient.header(client, "content-type") == "text/event-stream"
      assert SseClient.header(client, "cache-control") == "no-cache"
      assert SseClient.header(client, "x-accel-buffering") == "no"
      assert SseClient.header(client, "transfer-encoding") == "chunked"
    end

    @tag handler_opts: [retry: 2500]
    test ":retry goes out as the first event", %{port: port} do
      {raw, _handler} = open_plain_raw(port)
      assert {:ok, data} = RawClient.read_until(raw, "retry: 2500\n\n")
      [_head, body] = :binary.split(data, "\r\n\r\n")
      assert RawClient.dechunk(body) == {"retry: 2500\n\n", false}
    end

    @tag server_opts: [heartbeat: 50]
    test "an idle stream gets heartbeat comments", %{port: port} do
      {raw, _handler} = open_plain_raw(port)
      # One chunk holding ":\n\n", the comment line a client ignores.
      assert {:ok, _} = RawClient.read_until(raw, "3\r\n:\n\n\r\n")
    end
  end

  describe "Crier.send_event/2" do
    test "writes one chunk per event, exactly the encoder's bytes", %{port: port} do
      {raw, handler} = open_plain_raw(port)

      event = %Event{id: "1", event: "tick", data: "two\nlines ✓"}
      assert {:ok, _} = run(handler, &Crier.send_event(&1, event))
      wire = "id: 1\nevent: tick\ndata: two\ndata: lines ✓\n\n"
      size = byte_size(wire) |> Integer.to_string(16) |> String.downcase()
      assert {:ok, data} = RawClient.read_until(raw, "\r\n" <> wire <> "\r\n")
      assert String.ends_with?(data, "\r\n\r\n" <> size <> "\r\n" <> wire <> "\r\n")
    end

    test "a client parses what it wrote back to the same events", %{port: port} do
      {client, handler, _conn} = open_plain(port)

      events = [
        %Event{data: "multi\r\nline\rdata\nhere"},
        %Event{id: "7", event: "custom", data: "ünïcödé 日本 😀"},
        %Event{id: "8", data: ""},
        %Event{comment: "ignored\nby clients", data: " leading space"}
      ]

      for event <- events, do: {:ok, _} = run(handler, &Crier.send_event(&1, event))
      {got, _client} = SseClient.take(client, 4)

      assert got == [
               %{type: "message", data: "multi\nline\ndata\nhere", id: ""},
               %{type: "custom", data: "ünïcödé 日本 😀", id: "7"},
               %{type: "message", data: "", id: "8"},
               %{type: "message", data: " leading space", id: "8"}
             ]
    end

    test "a hostile event raises and nothing reaches the stream", %{port: port} do
      {client, handler, _conn} = open_plain(port)

      assert %ArgumentError{} =
               run(handler, fn conn ->
                 try do
                   Crier.send_event(conn, %Event{id: "1\n", data: "x"})
                 rescue
                   error -> error
                 end
               end)

      {:ok, _} = run(handler, &Crier.send_event(&1, %Event{data: "after"}))
      assert {:ok, %{data: "after", id: ""}, _} = SseClient.next_event(client)
    end

    test "an HTTP/1.0 client gets the events delimited by the close", %{port: port} do
      {client, handler, _conn} = open_plain(port, version: "HTTP/1.0")
      refute SseClient.header(client, "transfer-encoding")
      {:ok, _} = run(handler, &Crier.send_event(&1, %Event{data: "a\nb"}))
      send(handler, :return)
      assert {:closed, [%{data: "a\nb"}]} = SseClient.read_to_end(client)
    end
  end
end
