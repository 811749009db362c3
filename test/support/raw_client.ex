defmodule Crier.Test.RawClient do
  @moduledoc """
  A plain `:gen_tcp` HTTP/1.1 client for tests: sends raw bytes, reads until a pattern or a
  close, with deadlines (never a bare sleep).
  """

  @doc "Connects to `port` on 127.0.0.1 in passive binary mode."
  @spec connect(:inet.port_number(), keyword()) :: :gen_tcp.socket()
  def connect(port, opts \\ []) do
    ip = Keyword.get(opts, :ip, {127, 0, 0, 1})
    {:ok, socket} = :gen_tcp.connect(ip, port, [:binary, active: false, packet: :raw], 5_000)
    socket
  end

  @doc "Connects to `port`, sends `raw` (the bytes of one or more requests) and returns the socket."
  @spec send_new(:inet.port_number(), iodata()) :: :gen_tcp.socket()
  def send_new(port, raw) do
    socket = connect(port)
    :ok = :gen_tcp.send(socket, raw)
    socket
  end

  @doc "Sends a GET for `path` with Host set."
  @spec get(:gen_tcp.socket(), String.t(), [{String.t(), String.t()}]) :: :ok
  def get(socket, path, headers \\ []) do
    extra = Enum.map_join(headers, "", fn {k, v} -> "#{k}: #{v}\r\n" end)
    :gen_tcp.send(socket, "GET #{path} HTTP/1.1\r\nhost: localhost\r\n#{extra}\r\n")
  end

  @doc """
  Reads until `acc` contains `pattern` (binary or regex), the socket closes, or `timeout` ms
  pass. Returns `{:ok, data}`, `{:closed, data}` or `{:timeout, data}`.
  """
  @spec read_until(:gen_tcp.socket(), binary() | Regex.t(), timeout(), binary()) ::
          {:ok | :closed | :timeout, binary()}
  def read_until(socket, pattern, timeout \\ 5_000, acc \\ "") do
    deadline = System.monotonic_time(:millisecond) + timeout
    loop(socket, pattern, deadline, acc)
  end

  defp loop(socket, pattern, deadline, acc) do
    if matches?(acc, pattern) do
      {:ok, acc}
    else
      left = deadline - System.monotonic_time(:millisecond)

      if left <= 0 do
        {:timeout, acc}
      else
        case :gen_tcp.recv(socket, 0, left) do
          {:ok, data} -> loop(socket, pattern, deadline, acc <> data)
          {:error, :timeout} -> {:timeout, acc}
          {:error, _closed} -> {:closed, acc}
        end
      end
    end
  end

  defp matches?(acc, %Regex{} = regex), do: Regex.match?(regex, acc)
  defp matches?(acc, pattern), do: String.contains?(acc, pattern)

  @doc "Reads until the peer closes (`{:closed, data}`) or `timeout` ms pass (`{:timeout, data}`)."
  @spec read_to_close(:gen_tcp.socket(), timeout()) :: {:closed | :timeout, binary()}
  def read_to_close(socket, timeout \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    drain(socket, deadline, "")
  end

  defp drain(socket, deadline, acc) do
    left = max(deadline - System.monotonic_time(:millisecond), 0)

    case :gen_tcp.recv(socket, 0, left) do
      {:ok, data} -> drain(socket, deadline, acc <> data)
      {:error, :timeout} -> {:timeout, acc}
      {:error, _closed} -> {:closed, acc}
    end
  end

  @doc "Closes with an RST instead of a FIN (SO_LINGER 0)."
  @spec reset(:gen_tcp.socket()) :: :ok
  def reset(socket) do
    :ok = :inet.setopts(socket, linger: {true, 0})
    :gen_tcp.close(socket)
  end

  @doc "Decodes a chunked body: returns the concatenated chunk data and whether the last chunk came."
  @spec dechunk(binary()) :: {binary(), boolean()}
  def dechunk(body), do: dechunk(body, [])

  defp dechunk(body, acc) do
    case :binary.split(body, "\r\n") do
      [size_hex, rest] ->
        case Integer.parse(size_hex, 16) do
          {0, ""} ->
            {IO.iodata_to_binary(acc), true}

          {size, ""} when byte_size(rest) >= size + 2 ->
            <<data::binary-size(size), "\r\n", more::binary>> = rest
            dechunk(more, [acc, data])

          _ ->
            {IO.iodata_to_binary(acc), false}
        end

      _ ->
        {IO.iodata_to_binary(acc), false}
    end
  end

  @doc "Splits a response into `{status, headers, body}`; header names lowercased."
  @spec parse_response(binary()) :: {integer(), [{String.t(), String.t()}], binary()}
  def parse_response(data) do
    [head, body] = :binary.split(data, "\r\n\r\n")
    [status_line | lines] = String.split(head, "\r\n")
    [_version, status | _] = String.split(status_line, " ", parts: 3)

    headers =
      for line <- lines do
        [k, v] = String.split(line, ":", parts: 2)
        {String.downcase(k), String.trim(v)}
      end

    {String.to_integer(status), headers, body}
  end
end
