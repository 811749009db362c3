defmodule Crier.HTTP.ConnTest do
  @moduledoc """
  `Crier.Conn` as a handler uses it: values from Elixir that cannot go on the wire raise
  `ArgumentError` and leave the connection usable, and `read_body/2` keeps Plug's contract
  (`{:ok, body, conn}`, `{:more, partial, conn}`, `{:error, reason}`; `:length`,
  `:read_length`, `:read_timeout`).
  """
  use Crier.Test.HttpCase, async: true

  alias Crier.Conn

  @get "GET / HTTP/1.1\r\nhost: a\r\n\r\n"

  describe "values from Elixir" do
    @tag handler_opts: [fun: &__MODULE__.try_then_answer/2]
    test "a status outside 100..999 raises ArgumentError; the connection stays usable",
         %{port: port} do
      for status <- [99, 1000, 0, -200, 200.0, "200", :ok] do
        message = raised(port, &Conn.send_resp(&1, status, [], "x"))
        assert message =~ "status must be an integer in 100..999", message
        assert message =~ inspect(status)
      end
    end

    @tag handler_opts: [fun: &__MODULE__.try_then_answer/2]
    test "a header with CR, LF or NUL raises ArgumentError saying which and why",
         %{port: port} do
      cases = [
        {[{"x-a", "v\r\nset-cookie: evil"}], ~s(invalid value for header "x-a": contains CR)},
        {[{"x-a", "v\nx"}], ~s(invalid value for header "x-a": contains LF)},
        {[{"x-a", "v\0x"}], ~s(invalid value for header "x-a": contains NUL)},
        {[{"x-a\r\n", "v"}], ~s(invalid header name "x-a\\r\\n")},
        {[{"x a", "v"}], ~s(invalid header name "x a")},
        {[{"x\0", "v"}], ~s(invalid header name "x\\0")},
        {[{"", "v"}], ~s(invalid header name "")},
        {[{:x, "v"}], "headers must be a list of {name, value} string tuples"},
        {[{"x", 1}], "headers must be a list of {name, value} string tuples"},
        {%{"x" => "v"}, "headers must be a list of {name, value} string tuples"}
      ]

      for {headers, expected} <- cases,
          call <- [
            &Conn.send_resp(&1, 200, headers, "x"),
            &Conn.send_chunked(&1, 200, headers),
            &Conn.send_head(&1, 200, headers, 1),
            &Conn.inform(&1, 103, headers)
          ] do
        message = raised(port, call)
        assert message =~ expected, "#{inspect(headers)}: #{message}"
      end
    end

    @tag handler_opts: [fun: &__MODULE__.try_then_answer/2]
    test "a body that is not iodata raises ArgumentError; the connection stays usable",
         %{port: port} do
      for body <- [:atom, 1, ["ok", 256], [-1], %{a: 1}, {"a"}, ["a" | :b]] do
        message = raised(port, &Conn.send_resp(&1, 200, [], body))
        assert message =~ "body must be iodata", "#{inspect(body)}: #{message}"
      end
    end

    @tag handler_opts: [fun: &__MODULE__.stream_try_then_finish/2]
    test "chunk data that is not iodata raises ArgumentError; the stream goes on",
         %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, @get)
      assert_receive {:handled, handler, _}, 5_000
      send(handler, {:try, &Conn.chunk(&1, :not_iodata)})
      assert_receive {:raised, %ArgumentError{message: message}}, 5_000
      assert message =~ "chunk data must be iodata"
      assert {200, _, "before|after"} = read_response(client)
    end
  end

  describe "read_body/2" do
    @tag handler_opts: [fun: &__MODULE__.read_twice/2]
    test "gives {:ok, body, conn} for a whole body, then {:ok, \"\", conn}", %{port: port} do
      client = RawClient.connect(port)
      raw = "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello"
      assert {200, _, "hello"} = request(client, raw)
      assert_receive {:again, {:ok, "", %Conn{}}}, 5_000
    end

    @tag handler_opts: [fun: &__MODULE__.read_in_pieces/2]
    test ":length bounds each call, which gives {:more, partial, conn} until the end",
         %{port: port} do
      body = :crypto.strong_rand_bytes(300_000)
      client = post_sized(port, "/length=70000", body)
      assert_receive {:pieces, pieces}, 5_000
      assert {:ok, _} = List.last(pieces)
      assert Enum.all?(Enum.drop(pieces, -1), &match?({:more, _}, &1))
      assert length(pieces) >= 5
      assert Enum.all?(pieces, fn {_, data} -> byte_size(data) <= 70_000 end)
      assert IO.iodata_to_binary(for {_, data} <- pieces, do: data) == body
      assert {200, _, ""} = read_response(client)
    end

    @tag handler_opts: [fun: &__MODULE__.read_in_pieces/2]
    test ":read_length sizes the reads without changing the result", %{port: port} do
      body = :crypto.strong_rand_bytes(100_000)
      client = RawClient.connect(port)
      head = "POST /read_length=1000 HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
      chunks = for <<piece::binary-size(10_000) <- body>>, do: ["2710\r\n", piece, "\r\n"]
      :ok = :gen_tcp.send(client, [head, chunks, "0\r\n\r\n"])
      assert_receive {:pieces, [{:ok, ^body}]}, 5_000
    end

    @tag handler_opts: [fun: &__MODULE__.read_with_timeout/2]
    test ":read_timeout gives what came as {:more, ..}, then {:error, :timeout}", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc")
      assert_receive {:read, {:more, "abc", %Conn{}}}, 5_000
      assert_receive {:read, {:error, :timeout}}, 5_000
      assert {408, _, "slow"} = read_response(client)
    end

    @tag server_opts: [max_body: 1000], handler_opts: [fun: &__MODULE__.read_and_report/2]
    test "a chunked body past max_body gives {:error, :too_large} and the client 413",
         %{port: port} do
      body = ["3e8\r\n", :binary.copy("x", 1000), "\r\n1\r\nx\r\n0\r\n\r\n"]
      assert_chunked_body_refused(port, body, :too_large, 413)
    end

    @tag handler_opts: [fun: &__MODULE__.read_and_report/2]
    test "broken chunked framing gives {:error, :bad_request} and the client 400",
         %{port: port} do
      assert_chunked_body_refused(port, "5\r\nhelloNOCRLF", :bad_request, 400)
    end

    @tag handler_opts: [fun: &__MODULE__.read_and_report/2]
    test "a client that leaves mid-body gives {:error, :closed}", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc")
      assert_receive {:handled, _, _}, 5_000
      :gen_tcp.close(client)
      assert_receive {:read, {:error, :closed}}, 5_000
    end

    @tag handler_opts: [fun: &__MODULE__.read_in_pieces/2]
    test "a body larger than the read-ahead window arrives whole and in order", %{port: port} do
      body = :crypto.strong_rand_bytes(2_000_000)
      post_sized(port, "/length=8000000", body)
      assert_receive {:pieces, [{:ok, ^body}]}, 10_000
    end
  end

  # Sends @get on a new connection, has the handler run `call`, and returns the message of
  # the ArgumentError it raised; the handler then answers 200 "fine" on the same exchange,
  # which must be the first bytes on the wire (nothing of the bad call went out).
  defp raised(port, call) do
    client = RawClient.connect(port)
    :ok = :gen_tcp.send(client, @get)
    assert_receive {:handled, handler, _}, 5_000
    send(handler, {:try, call})
    assert_receive {:raised, result}, 5_000
    assert %ArgumentError{message: message} = result
    assert {200, _, "fine"} = read_response(client)
    :gen_tcp.close(client)
    message
  end

  @doc false
  # Runs the calls the test sends and reports what each raised; answers 200 "fine".
  def try_then_answer(conn, test) do
    receive do
      {:try, fun} -> send(test, {:raised, raise_of(fn -> fun.(conn) end)})
    end

    Conn.send_resp(conn, 200, [], "fine")
  end

  @doc false
  def stream_try_then_finish(conn, test) do
    {:ok, conn} = Conn.send_head(conn, 200, [], byte_size("before|after"))
    {:ok, conn} = Conn.chunk(conn, "before|")

    receive do
      {:try, fun} -> send(test, {:raised, raise_of(fn -> fun.(conn) end)})
    end

    Conn.chunk(conn, "after")
  end

  defp raise_of(fun) do
    fun.()
    nil
  rescue
    error -> error
  end

  @doc false
  def read_twice(conn, test) do
    {:ok, body, conn} = Conn.read_body(conn)
    send(test, {:again, Conn.read_body(conn)})
    Conn.send_resp(conn, 200, [], body)
  end

  @doc false
  # Reads the body with the options in the path ("/length=N" or "/read_length=N").
  def read_in_pieces(conn, test) do
    [key, value] = conn.path |> String.trim_leading("/") |> String.split("=")
    opts = [{String.to_existing_atom(key), String.to_integer(value)}]
    send(test, {:pieces, pieces(conn, opts, [])})
  end

  defp pieces(conn, opts, acc) do
    case Conn.read_body(conn, opts) do
      {:ok, data, conn} ->
        Conn.send_resp(conn, 200, [], "")
        Enum.reverse([{:ok, data} | acc])

      {:more, data, conn} ->
        pieces(conn, opts, [{:more, data} | acc])

      {:error, reason} ->
        Enum.reverse([{:error, reason} | acc])
    end
  end

  @doc false
  def read_with_timeout(conn, test) do
    {:more, _, conn} = result = Conn.read_body(conn, read_timeout: 100)
    send(test, {:read, result})
    send(test, {:read, Conn.read_body(conn, read_timeout: 100)})
    Conn.send_resp(conn, 408, [], "slow")
  end

  # Sends the head of a chunked POST, waits for the handler (`read_and_report/2`) to take it,
  # then sends `body`: the handler's read must fail with `reason`, the client get `status`
  # and a close.
  defp assert_chunked_body_refused(port, body, reason, status) do
    client = RawClient.connect(port)

    :ok =
      :gen_tcp.send(client, "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n")

    assert_receive {:handled, _, _}, 5_000
    :ok = :gen_tcp.send(client, body)
    assert_receive {:read, {:error, ^reason}}, 5_000
    assert {^status, _, _} = read_response(client)
    assert_closed(client)
  end

  # POSTs `body` with a content-length to `path` (which carries read_in_pieces/2's options) on
  # a new connection; returns the client.
  defp post_sized(port, path, body) do
    client = RawClient.connect(port)
    head = "POST #{path} HTTP/1.1\r\nhost: a\r\ncontent-length: #{byte_size(body)}\r\n\r\n"
    :ok = :gen_tcp.send(client, [head, body])
    client
  end

  @doc false
  def read_and_report(conn, test), do: send(test, {:read, Conn.read_body(conn)})
end
