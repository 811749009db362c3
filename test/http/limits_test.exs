defmodule Crier.HTTP.LimitsTest do
  @moduledoc """
  Limits that protect the server as a whole: slow clients cannot hold it up and are cut at
  the header deadline, and connections past the cap get 503. Not async: 2,000 connections
  would slow every test running beside them.
  """
  use Crier.Test.HttpCase, async: false

  @slow_clients 2_000

  @tag :slow
  @tag timeout: 120_000
  @tag server_opts: [header_timeout: 4_000]
  test "2,000 clients trickling header bytes neither delay a normal request nor outlive the header deadline",
       %{port: port, server: server} do
    slow = for _ <- 1..@slow_clients, do: RawClient.connect(port)
    trickler = start_trickler(slow)
    Wait.until(fn -> Crier.stats(server).connections == @slow_clients end, 10_000)

    # A normal request made meanwhile is served while every slow client is still held.
    client = RawClient.connect(port)
    assert {200, _, "GET /normal"} = request(client, "GET /normal HTTP/1.1\r\nhost: a\r\n\r\n")
    stats = Crier.stats(server)
    assert stats.rejected == 0, "slow clients were cut before the normal request was answered"
    assert stats.connections == @slow_clients + 1
    assert stats.requests == 1

    # Then each slow client is cut at the deadline with 408, though it never went quiet.
    Wait.until(fn -> Crier.stats(server).rejected == @slow_clients end, 20_000)
    send(trickler, :stop)

    for socket <- slow do
      assert {:closed, data} = RawClient.read_to_close(socket)
      assert {408, _, _} = RawClient.parse_response(data)
    end

    assert Crier.stats(server).requests == 1
    # The normal client's kept-alive connection is not subject to the header deadline.
    assert {200, _, "GET /again"} = request(client, "GET /again HTTP/1.1\r\nhost: a\r\n\r\n")
  end

  @tag server_opts: [max_connections: 5]
  test "a connection over max_connections gets 503 and a close", %{port: port, server: server} do
    held = for _ <- 1..5, do: RawClient.connect(port)
    Wait.until(fn -> Crier.stats(server).connections == 5 end)

    over = RawClient.connect(port)
    :ok = :gen_tcp.send(over, "GET / HTTP/1.1\r\nhost: a\r\n\r\n")
    assert {:closed, data} = RawClient.read_to_close(over)
    assert {503, _, _} = RawClient.parse_response(data)
    assert_not_handled(server)

    # A freed slot takes a new connection again.
    :gen_tcp.close(hd(held))
    Wait.until(fn -> Crier.stats(server).connections == 4 end)
    client = RawClient.connect(port)
    assert {200, _, "GET /"} = request(client, "GET / HTTP/1.1\r\nhost: a\r\n\r\n")
  end

  # Sends the next byte of a never-ending head on every socket, one round a second.
  defp start_trickler(sockets) do
    head = "GET /slow HTTP/1.1\r\nhost: a\r\nx-slow: " <> String.duplicate("a", 100)

    spawn_link(fn ->
      # Sockets may be used from any process; the test keeps ownership for reading.
      trickle(sockets, head, 0)
    end)
  end

  defp trickle(sockets, head, at) do
    <<_::binary-size(rem(at, byte_size(head))), byte, _::binary>> = head
    for socket <- sockets, do: :gen_tcp.send(socket, <<byte>>)

    receive do
      :stop -> :ok
    after
      1_000 -> trickle(sockets, head, at + 1)
    end
  end
end
