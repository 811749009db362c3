defmodule Crier.BackpressureTest do
  @moduledoc """
  Backpressure over real sockets: a client that stops reading fills the stream's bounded
  write queue, `chunk/2` then waits in a `receive` (not on a scheduler), the queue never
  grows past `:write_queue_bytes`, and after `:send_timeout` the owner is told `:timeout`
  once while `chunk/2` returns `{:error, :closed}`. Nothing but that one close message is
  left in the owner's mailbox.
  """
  # Not async: megabytes cross loopback here, which would slow other modules' tests.
  use ExUnit.Case, async: false

  alias Crier.Conn
  alias Crier.Test.{FunHandler, RawClient, Wait}

  @cap 16 * 1024
  @piece :binary.copy("x", 1_000)

  # A client with a 4 KiB receive buffer that reads the response head and then nothing.
  defp stalled_client(port) do
    {:ok, socket} =
      :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false, recbuf: 4096], 5_000)

    :ok = RawClient.get(socket, "/")
    {:ok, head} = RawClient.read_until(socket, "\r\n\r\n")
    [_head, body_start] = :binary.split(head, "\r\n\r\n")
    {socket, body_start}
  end

  # Chunks until chunk/2 gives up; reports every queued-bytes reading it took on the way.
  defp fill(conn, count, max_queued) do
    case Conn.chunk(conn, @piece) do
      {:ok, conn} ->
        queued = Crier.stats(conn.server).queued_bytes
        fill(conn, count + 1, max(max_queued, queued))

      {:error, :closed} ->
        {count, max_queued}
    end
  end

  # What the owner has left after a close: the close message (once), then nothing.
  defp after_close(conn, test) do
    ref = conn.ref

    receive do
      {:crier, ^ref, {:error, reason}} -> send(test, {:closed_with, reason})
    after
      5_000 -> send(test, {:closed_with, :no_message})
    end

    receive do
      {:crier, ^ref, extra} -> send(test, {:extra, extra})
    after
      200 -> :ok
    end

    send(test, {:mailbox, FunHandler.flush_mailbox()})
  end

  defp waiting_in_chunk?(pid) do
    Process.info(pid, :current_function) == {:current_function, {Conn, :wait_writable, 3}}
  end

  test "a client that stops reading: chunk/2 waits, the queue stays under its cap, then :timeout" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Crier.sse(conn)
          send(test, {:owner, self()})
          {count, max_queued} = fill(conn, 0, 0)
          send(test, {:chunk_gave_up, count, max_queued})
          after_close(conn, test)
        end,
        write_queue_bytes: @cap,
        send_timeout: 300,
        heartbeat: nil
      )

    {client, _} = stalled_client(port)
    assert_receive {:owner, owner}, 5_000

    stalled(owner, name)
    queued = Crier.stats(name).queued_bytes
    assert queued <= @cap, "queued #{queued} bytes, cap #{@cap}"

    assert_receive {:chunk_gave_up, count, max_queued}, 5_000
    assert count > 0
    assert max_queued <= @cap, "the queue held #{max_queued} bytes, cap #{@cap}"
    assert_receive {:closed_with, :timeout}, 5_000
    # The owner's window for stray messages is over once it reports its mailbox; an extra
    # message would have reached the test before that report.
    assert_receive {:mailbox, []}, 2_000
    refute_received {:extra, _}

    stats = Wait.until(fn -> (s = Crier.stats(name)) && s.streams == 0 && s end)
    assert stats.closes.timeout == 1
    assert stats.queued_bytes == 0
    :gen_tcp.close(client)
  end

  test "chunk/2 resumes when the client reads again, and every byte arrives in order" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Conn.send_chunked(conn, 200, [])
          send(test, {:owner, self()})
          {conn, count} = produce(conn, 1)
          send(test, {:produced, count, FunHandler.flush_mailbox()})
          conn
        end,
        write_queue_bytes: @cap,
        send_timeout: 10_000
      )

    {client, body_start} = stalled_client(port)
    assert_receive {:owner, owner}, 5_000
    stalled(owner, name)
    send(owner, :stop)

    body = read_body(client, body_start)
    assert_receive {:produced, count, []}, 2_000
    {received, true} = RawClient.dechunk(body)
    assert received == IO.iodata_to_binary(Enum.map(1..count, &piece/1))
    :gen_tcp.close(client)
  end

  # Numbered pieces until the test says stop; the stop waits behind a chunk/2 that waits.
  defp produce(conn, i) do
    receive do
      :stop -> {conn, i - 1}
    after
      0 ->
        {:ok, conn} = Conn.chunk(conn, piece(i))
        produce(conn, i + 1)
    end
  end

  defp piece(i), do: String.pad_leading(Integer.to_string(i), 1_000, "-")

  # Reads a chunked body to its last chunk.
  defp read_body(client, acc) do
    {:ok, data} = :gen_tcp.recv(client, 0, 10_000)
    acc = IO.iodata_to_binary([acc | data])

    if String.ends_with?(acc, "\r\n0\r\n\r\n"), do: acc, else: read_body(client, acc)
  end

  # The owner waits in chunk/2 while the stream's queue holds bytes: the kernel's buffers and
  # the write queue are full. (A chunk/2 that waits while the queue is momentarily empty is
  # one the task is about to wake.)
  defp stalled(owner, name) do
    Wait.until(
      fn -> waiting_in_chunk?(owner) and Crier.stats(name).queued_bytes > 0 end,
      10_000,
      "chunk/2 never waited on a full queue"
    )
  end

  test "queued chunks leave in vectored writes, not one write call per chunk" do
    test = self()
    pieces = for i <- 1..500, do: String.pad_leading(Integer.to_string(i), 100, ".")
    filler = :binary.copy("f", 8 * 1024 * 1024)

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Conn.send_chunked(conn, 200, [])
          # More than the kernel takes while the client does not read: what follows queues.
          {:ok, conn} = Conn.chunk(conn, filler)

          conn =
            Enum.reduce(pieces, conn, fn piece, conn ->
              {:ok, conn} = Conn.chunk(conn, piece)
              conn
            end)

          send(test, {:queued, Crier.stats(conn.server)})
          conn
        end,
        write_queue_bytes: 64 * 1024 * 1024
      )

    {client, body_start} = stalled_client(port)
    assert_receive {:queued, before}, 5_000
    assert before.queued_bytes > 500 * 100

    body = read_body(client, body_start)
    {received, true} = RawClient.dechunk(body)
    assert received == IO.iodata_to_binary([filler | pieces])

    writes = Crier.stats(name).writes - before.writes
    assert writes < 50, "#{writes} write calls for the filler's rest and 500 queued chunks"
    :gen_tcp.close(client)
  end

  test "the send deadline holds in Rust too: a stalled queue closes with :timeout with no chunk/2 waiting" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Conn.send_chunked(conn, 200, [])
          # One chunk larger than any socket buffer, into an empty queue: accepted whole.
          {:ok, conn} = Conn.chunk(conn, :binary.copy("y", 8 * 1024 * 1024))
          send(test, :queued)
          after_close(conn, test)
        end,
        write_queue_bytes: @cap,
        send_timeout: 300
      )

    {client, _} = stalled_client(port)
    assert_receive :queued, 5_000
    assert_receive {:closed_with, :timeout}, 5_000
    assert_receive {:mailbox, []}, 2_000
    assert Wait.until(fn -> Crier.stats(name).queued_bytes == 0 end)
    :gen_tcp.close(client)
  end

  test "a client that leaves while chunk/2 waits: chunk/2 returns at once, one close message" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Conn.send_chunked(conn, 200, [])
          send(test, {:owner, self()})
          {_count, _max} = fill(conn, 0, 0)
          send(test, :chunk_returned)
          after_close(conn, test)
        end,
        write_queue_bytes: @cap,
        # Far longer than the test waits: chunk/2 must not sit it out.
        send_timeout: 60_000
      )

    {client, _} = stalled_client(port)
    assert_receive {:owner, owner}, 5_000
    stalled(owner, name)
    RawClient.reset(client)

    assert_receive :chunk_returned, 5_000
    assert_receive {:closed_with, :closed}, 5_000
    assert_receive {:mailbox, []}, 2_000
    refute_received {:extra, _}
  end
end
