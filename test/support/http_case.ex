defmodule Crier.Test.HttpCase do
  @moduledoc """
  The case template of the HTTP tests: each test gets its own server, answered by
  `Crier.Test.HttpHandler`, with the options of its `@tag server_opts: [...]` and
  `@tag handler_opts: [...]` (a `:fun` that answers instead of the default routes).

  Helpers send raw bytes over `:gen_tcp` and read what the server answers.
  """

  use ExUnit.CaseTemplate

  alias Crier.Test.{HttpHandler, RawClient, Server}

  using do
    quote do
      import Crier.Test.HttpCase
      alias Crier.Test.{HttpHandler, RawClient, Wait}
    end
  end

  setup context do
    Server.start!(context, handler: {HttpHandler, test: self()})
  end

  @doc """
  Sends `raw` on a fresh connection and reads until the server closes it. Returns
  `{status, headers, body}` of the one response that came back; fails when the server sent
  nothing or did not close.
  """
  @spec refused(:inet.port_number(), iodata()) :: {integer(), list(), binary()}
  def refused(port, raw) do
    client = RawClient.connect(port)
    :ok = :gen_tcp.send(client, raw)
    assert {:closed, data} = RawClient.read_to_close(client), "the server kept the connection"
    assert data != "", "the server closed without an answer"
    RawClient.parse_response(data)
  end

  @doc """
  Sends each of `requests` on a fresh connection of its own (see `refused/2`) and asserts the
  server answered each with `status` and closed, then that none reached a handler (see
  `assert_not_handled/1`). `context` is the test's, with `:port` and `:server`.
  """
  @spec assert_refused(map(), pos_integer(), [iodata()]) :: true
  def assert_refused(%{port: port, server: server}, status, requests) do
    assert requests != [], "no request to send"

    for raw <- requests do
      {answered, _, _} = refused(port, raw)

      assert answered == status,
             "#{inspect(raw, printable_limit: 120)}: expected #{status}, got #{answered}"
    end

    assert_not_handled(server)
  end

  @doc """
  Asserts that no request reached a handler of `server`: its request counter, bumped before a
  head is handed over, is still zero, and no handler reported in.
  """
  @spec assert_not_handled(atom()) :: true
  def assert_not_handled(server) do
    assert Crier.stats(server).requests == 0, "a handler was called"
    refute_received {:handled, _, _}
    true
  end

  @doc "Sends `raw` on `client` and reads one whole response with a content-length."
  @spec request(:gen_tcp.socket(), iodata()) :: {integer(), list(), binary()}
  def request(client, raw) do
    :ok = :gen_tcp.send(client, raw)
    read_response(client)
  end

  @doc """
  Sends `raw` on a fresh connection to `port`, reads one response (see `read_response/1`) and
  asserts that it says `connection: close` and that the server then closed. Returns the
  response.
  """
  @spec request_then_close(:inet.port_number(), iodata()) :: {integer(), list(), binary()}
  def request_then_close(port, raw) do
    client = RawClient.connect(port)
    {_, headers, _} = response = request(client, raw)
    assert header(headers, "connection") == "close"
    assert_closed(client)
    response
  end

  @doc """
  Reads one response from `client`: the head, then a body framed by content-length or
  chunked (`{status, headers, body}`, body dechunked), or read to the close. Bytes past the
  response (pipelined answers) are kept for the next call on the same socket.
  """
  @spec read_response(:gen_tcp.socket()) :: {integer(), list(), binary()}
  def read_response(client) do
    {status, headers, rest} = read_head(client)

    {body, left} =
      cond do
        status in 100..199 or status in [204, 304] ->
          {"", rest}

        length = header(headers, "content-length") ->
          length = String.to_integer(length)
          data = read_at_least(client, length, rest)
          {binary_part(data, 0, length), binary_part(data, length, byte_size(data) - length)}

        header(headers, "transfer-encoding") == "chunked" ->
          read_chunks(client, rest, [])

        true ->
          {:closed, more} = RawClient.read_to_close(client)
          {rest <> more, ""}
      end

    if left != "", do: Process.put({__MODULE__, client}, left)
    {status, headers, body}
  end

  @doc """
  Reads one response that is a head alone, whatever its fields say (1xx, 204, 304, or any
  answer to HEAD): `{status, headers, ""}`. Later bytes are kept as `read_response/1` keeps
  them.
  """
  @spec read_head_response(:gen_tcp.socket()) :: {integer(), list(), binary()}
  def read_head_response(client) do
    {status, headers, rest} = read_head(client)
    if rest != "", do: Process.put({__MODULE__, client}, rest)
    {status, headers, ""}
  end

  # Reads up to the end of a head (with bytes kept from the last read first); returns its
  # status and headers and the bytes after it.
  defp read_head(client) do
    acc = Process.delete({__MODULE__, client}) || ""
    {:ok, data} = RawClient.read_until(client, "\r\n\r\n", 5_000, acc)
    [head, rest] = :binary.split(data, "\r\n\r\n")
    {status, headers, ""} = RawClient.parse_response(head <> "\r\n\r\n")
    {status, headers, rest}
  end

  defp read_at_least(_client, n, acc) when byte_size(acc) >= n, do: acc

  defp read_at_least(client, n, acc) do
    {:ok, data} = :gen_tcp.recv(client, 0, 5_000)
    read_at_least(client, n, acc <> data)
  end

  # Decodes a chunked body strictly (sizes, CRLFs, trailers), reading more as needed; returns
  # the data and the bytes after the body.
  defp read_chunks(client, data, acc) do
    case :binary.split(data, "\r\n") do
      [size_line, rest] ->
        {size, ""} = Integer.parse(size_line, 16)

        if size == 0 do
          read_trailers(client, rest, IO.iodata_to_binary(acc))
        else
          rest = read_at_least(client, size + 2, rest)
          <<chunk::binary-size(size), "\r\n", rest::binary>> = rest
          read_chunks(client, rest, [acc, chunk])
        end

      [_partial] ->
        read_chunks(client, read_at_least(client, byte_size(data) + 1, data), acc)
    end
  end

  defp read_trailers(client, data, body) do
    case :binary.split(data, "\r\n") do
      ["", rest] -> {body, rest}
      [_trailer, rest] -> read_trailers(client, rest, body)
      [_partial] -> read_trailers(client, read_at_least(client, byte_size(data) + 1, data), body)
    end
  end

  @doc "The value of header `name` (lowercase) in parsed `headers`, or nil."
  @spec header(list(), String.t()) :: String.t() | nil
  def header(headers, name) do
    case List.keyfind(headers, name, 0) do
      {_, value} -> value
      nil -> nil
    end
  end

  @doc "Asserts the server closed `client` (end of stream, nothing more sent)."
  @spec assert_closed(:gen_tcp.socket()) :: true
  def assert_closed(client) do
    left = Process.delete({__MODULE__, client}) || ""
    assert {:closed, ""} = RawClient.read_to_close(client)
    assert left == "", "unexpected bytes before the close: #{inspect(left)}"
    true
  end
end
