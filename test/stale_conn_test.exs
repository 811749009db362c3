defmodule Crier.StaleConnTest do
  @moduledoc """
  Every call on a conn is checked against its own exchange: a conn kept from request 1 of a
  keep-alive connection, used while request 2 streams on it, gets `{:error, :closed}` and
  changes nothing of request 2 (issue 10, finding 4).
  """
  use ExUnit.Case, async: true

  alias Crier.Conn
  alias Crier.Test.{FunHandler, RawClient, Wait}

  setup do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn
          %Conn{path: "/one"} = conn ->
            send(test, {:first, conn})
            Conn.send_resp(conn, 200, [], "one")

          %Conn{path: "/two"} = conn ->
            {:ok, conn} = Crier.sse(conn)
            :ok = Crier.subscribe(conn, "room")
            send(test, {:second, self()})
            # The handler returns: the stream lives on in Rust, held by the topic alone.
            conn
        end,
        heartbeat: nil
      )

    client = RawClient.connect(port)
    :ok = RawClient.get(client, "/one")
    assert_receive {:first, first}, 5_000
    {:ok, _} = RawClient.read_until(client, "one")
    :ok = RawClient.get(client, "/two")
    assert_receive {:second, _handler}, 5_000
    {:ok, _head} = RawClient.read_until(client, "\r\n\r\n")
    Wait.until(fn -> Crier.subscribers(name, "room") == 1 end)
    %{name: name, client: client, first: first}
  end

  test "a stale conn cannot unsubscribe a later exchange's stream", ctx do
    assert Crier.unsubscribe(ctx.first, "room") == {:error, :closed}
    :ok = Crier.broadcast(ctx.name, "room", %Crier.Event{data: "still here"})
    assert {:ok, _} = RawClient.read_until(ctx.client, "data: still here\n\n")
    assert Crier.subscribers(ctx.name, "room") == 1
  end

  test "no other call of a stale conn reaches the later exchange", ctx do
    # Calls from a process other than the owner raise before the engine is asked; the owner
    # is set to this process so the calls reach the engine's check against the exchange.
    stale = %{ctx.first | state: :chunked, owner: self()}
    assert Conn.chunk(stale, "data: injected\n\n") == {:error, :closed}
    assert Crier.subscribe(stale, "elsewhere") == {:error, :closed}
    assert Conn.on_close(stale, :message) == {:error, :closed}
    assert Conn.read_body(stale) == {:error, :closed}
    :ok = Conn.close(stale)
    :ok = Crier.broadcast(ctx.name, "room", %Crier.Event{data: "untouched"})
    assert {:ok, got} = RawClient.read_until(ctx.client, "data: untouched\n\n")
    refute got =~ "injected"
    assert Crier.stats(ctx.name).topics == 1
  end
end
