defmodule Crier.TopicsTest do
  @moduledoc """
  Topics through the public API over real sockets: `subscribe/3` hands a stream to Rust so
  its handler may exit, `broadcast/4` returns at once and reaches every subscriber, a slow
  subscriber is dropped with `:overflow`, `unsubscribe/2` stops delivery, and `stats/1`
  counts topics and subscribers as they come and go.
  """
  # Counts BEAM processes, so nothing else may start or end processes meanwhile.
  use Crier.Test.TopicCase, async: false

  defp detached(port, path, opts \\ []), do: TopicHandler.connect_detached(port, path, opts)
  defp kept(port, path, opts \\ []), do: TopicHandler.connect(port, path, :subscribed, opts)

  defp stats(server), do: Crier.stats(server)

  describe "subscribe/3" do
    test "the stream lives on in Rust after its handler process has exited", %{
      server: server,
      port: port
    } do
      client = detached(port, "/topics/news")
      Wait.until(fn -> stats(server).subscribers == 1 end)

      :ok = Crier.broadcast(server, "news", %Event{id: "1", event: "headline", data: "one\ntwo"})

      assert {:ok, %{type: "headline", data: "one\ntwo", id: "1"}, _} =
               SseClient.next_event(client)
    end

    test "subscribers cost no BEAM process", %{server: server, port: port} do
      before = :erlang.system_info(:process_count)
      clients = for _ <- 1..200, do: detached(port, "/topics/many")
      Wait.until(fn -> stats(server).subscribers == 200 end)
      # Every handler has exited: 200 open streams, and no process for any of them.
      assert :erlang.system_info(:process_count) <= before + 5

      :ok = Crier.broadcast(server, "many", %Event{data: "to all"})

      for client <- clients do
        assert {:ok, %{data: "to all"}, _} = SseClient.next_event(client)
      end
    end

    test "one stream can take several topics", %{server: server, port: port} do
      client = detached(port, "/topics/a,b")
      Wait.until(fn -> stats(server).topics == 2 end)
      :ok = Crier.broadcast(server, "a", %Event{data: "from a"})
      :ok = Crier.broadcast(server, "b", %Event{data: "from b"})
      {events, _} = SseClient.take(client, 2)
      assert Enum.map(events, & &1.data) == ["from a", "from b"]
      assert stats(server).subscribers == 1
    end

    @tag server_opts: [heartbeat: 50]
    test "a detached stream still gets heartbeats", %{port: port} do
      raw = Crier.Test.RawClient.connect(port)
      Crier.Test.RawClient.get(raw, "/topics/quiet")
      assert_receive {:detached, _handler, _ref}
      assert {:ok, _} = Crier.Test.RawClient.read_until(raw, "3\r\n:\n\n\r\n")
    end

    test "an HTTP/1.0 subscriber gets broadcasts unframed, delimited by the close", %{
      server: server,
      port: port
    } do
      client = detached(port, "/topics/old", version: "HTTP/1.0")
      refute SseClient.header(client, "transfer-encoding")
      Wait.until(fn -> Crier.subscribers(server, "old") == 1 end)
      :ok = Crier.broadcast(server, "old", %Event{id: "1", data: "a\nb"})
      assert {:ok, %{id: "1", data: "a\nb"}, _} = SseClient.next_event(client)
    end

    test "on a closed stream it says so; before sse/2 it raises", %{port: port} do
      client = SseClient.connect(port, "/plain")
      assert_receive {:plain, handler, _conn}
      SseClient.close(client)
      assert_receive {:crier_msg, ^handler, _ref, {:error, :closed}}
      send(handler, {:run, &Crier.subscribe(&1, "late")})
      assert_receive {:ran, ^handler, {:error, :closed}}

      raw = Crier.Test.RawClient.connect(port)
      Crier.Test.RawClient.get(raw, "/unstarted")
      assert_receive {:unstarted, %ArgumentError{message: message}}
      assert message =~ "call sse/2 first"
    end
  end

  describe "broadcast/4" do
    test "returns :ok at once, with or without subscribers", %{server: server} do
      assert :ok = Crier.broadcast(server, "nobody", %Event{data: "x"})
      assert :ok = Crier.broadcast(server, "nobody", %{data: "a plain map"})
      assert :ok = Crier.broadcast(server, "nobody", %Event{data: "x"}, cluster: true)
      # A topic nobody holds and with no replay ring keeps no state.
      assert stats(server).topics == 0
    end

    test "raises for an event that cannot be encoded, and for an unknown server", %{
      server: server
    } do
      assert_raise ArgumentError, ~r/id must not contain/, fn ->
        Crier.broadcast(server, "t", %Event{id: "a\nb", data: "x"})
      end

      assert_raise ArgumentError, ~r/no Crier server/, fn ->
        Crier.broadcast(:no_such_server, "t", %Event{data: "x"})
      end
    end

    @tag server_opts: [write_queue_bytes: 16_384]
    test "a subscriber that cannot keep up is dropped with :overflow, the others go on", %{
      server: server,
      port: port
    } do
      # A client that never reads, with a small receive buffer: its queue fills once the
      # kernel buffers are full. Its owner stays to hear about it.
      {_slow, handler, conn} = kept(port, "/topics/feed?keep", recbuf: 4096)
      ref = conn.ref
      fast = detached(port, "/topics/feed")
      payload = String.duplicate("x", 4096)

      fast =
        Enum.reduce_while(1..20_000, fast, fn n, fast ->
          :ok = Crier.broadcast(server, "feed", %Event{id: "#{n}", data: payload})
          # Lockstep: the fast client takes each event before the next goes out.
          assert {:ok, %{id: id}, fast} = SseClient.next_event(fast)
          assert id == "#{n}"

          receive do
            {:crier_msg, ^handler, ^ref, {:error, :overflow}} -> {:halt, fast}
          after
            0 -> {:cont, fast}
          end
        end)

      assert stats(server).closes.overflow == 1
      send(handler, {:run, &Crier.send_event(&1, %Event{data: "late"})})
      assert_receive {:ran, ^handler, {:error, :closed}}
      :ok = Crier.broadcast(server, "feed", %Event{data: "still here"})
      assert {:ok, %{data: "still here"}, _} = SseClient.next_event(fast)
      Wait.until(fn -> stats(server).subscribers == 1 end)
    end
  end

  describe "unsubscribe/2" do
    test "stops delivery from that topic only", %{server: server, port: port} do
      {client, handler, _conn} = kept(port, "/topics/a,b?keep")
      send(handler, {:unsubscribe, "a"})
      assert_receive {:unsubscribed, ^handler}
      :ok = Crier.broadcast(server, "a", %Event{data: "to a"})
      :ok = Crier.broadcast(server, "b", %Event{data: "to b"})
      assert {:ok, %{data: "to b"}, _} = SseClient.next_event(client)
      Wait.until(fn -> stats(server).topics == 1 end)
    end

    test "a stream left with no topic and an owner stays the owner's", %{
      server: server,
      port: port
    } do
      {client, handler, _conn} = kept(port, "/topics/only?keep")
      send(handler, {:unsubscribe, "only"})
      assert_receive {:unsubscribed, ^handler}
      Wait.until(fn -> stats(server).subscribers == 0 end)
      send(handler, {:run, &Crier.send_event(&1, %Event{data: "mine"})})
      assert_receive {:ran, ^handler, {:ok, _}}
      assert {:ok, %{data: "mine"}, client} = SseClient.next_event(client)
      # The owner returns: the response ends with its last chunk.
      send(handler, :return)
      assert {:closed, []} = SseClient.read_to_end(client)
    end
  end

  describe "stats/1" do
    test "counts topics and subscribers (per topic with subscribers/2) as clients come and go",
         %{server: server, port: port} do
      assert %{topics: 0, subscribers: 0} = stats(server)
      c1 = detached(port, "/topics/x")
      c2 = detached(port, "/topics/x,y")
      Wait.until(fn -> match?(%{topics: 2, subscribers: 2, streams: 2}, stats(server)) end)
      assert {Crier.subscribers(server, "x"), Crier.subscribers(server, "y")} == {2, 1}
      assert Crier.subscribers(server, "nobody") == 0
      SseClient.close(c1)
      Wait.until(fn -> match?(%{topics: 2, subscribers: 1}, stats(server)) end)
      Wait.until(fn -> Crier.subscribers(server, "x") == 1 end)
      SseClient.close(c2)
      Wait.until(fn -> match?(%{topics: 0, subscribers: 0, streams: 0}, stats(server)) end)
      assert {Crier.subscribers(server, "x"), Crier.subscribers(server, "y")} == {0, 0}
      assert stats(server).closes.closed == 2
    end
  end
end
