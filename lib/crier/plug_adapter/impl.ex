defmodule Crier.PlugAdapter.Impl do
  @moduledoc false
  # The bodies of the `Plug.Conn.Adapter` callbacks, over a `%Crier.Conn{}` payload. This
  # module compiles without Plug, so CI exercises every callback against a live connection;
  # `Crier.PlugAdapter` (compiled only when Plug is loaded) is a shell that delegates here.
  #
  # Every call runs in the request process, the one that owns the connection. Return shapes
  # follow the behaviour exactly; `Plug.Conn` pattern-matches on them.
  #
  # A client that left is not an error for the send callbacks: `Plug.Conn` matches
  # `{:ok, body, payload}` and would crash on anything else. Like Cowboy, they drop the
  # bytes; the owner learns of the close from Crier itself (`on_close: :exit` ends it with
  # `{:shutdown, :closed}`, the plug default) and `chunk/2` answers `{:error, :closed}`.

  alias Crier.Conn

  @already_sent {:plug_conn, :sent}

  # Bytes read from a file per chunk in send_file/6: small enough that a file never sits in
  # memory, large enough that a read costs little next to the write. A quarter of the
  # default write queue (256 KiB), so the queue stays full while the socket drains.
  @file_read_bytes 64 * 1024

  # The default port of the http scheme (RFC 9110 section 4.2.1), Crier's only one.
  @http_port 80

  @type headers :: [{String.t(), String.t()}]

  @doc false
  @spec send_resp(Conn.t(), Conn.status(), headers(), iodata()) :: {:ok, nil, Conn.t()}
  def send_resp(%Conn{} = conn, status, headers, body) do
    result = Conn.send_resp(conn, status, headers, body)
    send(self(), @already_sent)
    {:ok, nil, sent(result, conn, :sent)}
  end

  @doc false
  # Streams `length` bytes of `path` from `offset` (`:all`: to the end) behind a
  # content-length head, reading @file_read_bytes at a time; a HEAD request gets the
  # head alone and the file is not read. A file that turns out shorter than announced cuts
  # the response short, and Crier closes the connection after it so the client notices.
  @spec send_file(Conn.t(), Conn.status(), headers(), binary(), integer(), integer() | :all) ::
          {:ok, nil, Conn.t()}
  def send_file(%Conn{} = conn, status, headers, path, offset, length) do
    length = file_length(File.stat!(path), offset, length)
    file = File.open!(path, [:read, :raw, :binary])

    try do
      result = Conn.send_head(conn, status, headers, length)
      send(self(), @already_sent)

      case result do
        {:ok, conn} when conn.method == "HEAD" -> {:ok, nil, conn}
        {:ok, conn} -> {:ok, nil, copy_file(conn, file, path, offset, length)}
        {:error, :closed} -> {:ok, nil, %{conn | state: :sent}}
      end
    after
      File.close(file)
    end
  end

  defp file_length(%File.Stat{type: :regular, size: size}, offset, :all)
       when is_integer(offset) and offset >= 0,
       do: max(size - offset, 0)

  defp file_length(%File.Stat{type: :regular, size: size}, offset, length)
       when is_integer(offset) and offset >= 0 and is_integer(length) and length >= 0,
       do: min(length, max(size - offset, 0))

  defp file_length(%File.Stat{type: type}, _offset, _length) when type != :regular,
    do: raise(ArgumentError, "send_file needs a regular file, got a #{type}")

  defp file_length(_stat, offset, length) do
    raise ArgumentError,
          "send_file needs a non-negative offset and length (or :all), got: " <>
            "#{inspect(offset)}, #{inspect(length)}"
  end

  defp copy_file(conn, _file, _path, _position, 0), do: conn

  defp copy_file(conn, file, path, position, remaining) do
    case :file.pread(file, position, min(remaining, @file_read_bytes)) do
      {:ok, data} ->
        read = byte_size(data)

        case Conn.chunk(conn, data) do
          {:ok, conn} -> copy_file(conn, file, path, position + read, remaining - read)
          {:error, :closed} -> conn
        end

      # The file shrank since it was measured: stop here; the short body closes the
      # connection after the response.
      :eof ->
        conn

      {:error, reason} ->
        raise File.Error, reason: reason, action: "read file", path: path
    end
  end

  @doc false
  # A `content-length` among the headers asks for a sized body instead of chunked framing
  # (the behaviour's doc says so). A `text/event-stream` response is started as an SSE
  # stream, so it gets Crier's heartbeat comments while idle.
  @spec send_chunked(Conn.t(), Conn.status(), headers()) :: {:ok, nil, Conn.t()}
  def send_chunked(%Conn{} = conn, status, headers) do
    result =
      case content_length(headers) do
        nil -> Conn.send_chunked(conn, status, headers, event_stream?(headers))
        length -> Conn.send_head(conn, status, headers, length)
      end

    send(self(), @already_sent)
    {:ok, nil, sent(result, conn, :chunked)}
  end

  @doc false
  @spec chunk(Conn.t(), iodata()) :: :ok | {:error, :closed}
  def chunk(%Conn{} = conn, data) do
    case Conn.chunk(conn, data) do
      {:ok, _conn} -> :ok
      {:error, :closed} -> {:error, :closed}
    end
  end

  @doc false
  @spec read_req_body(Conn.t(), keyword()) ::
          {:ok, binary(), Conn.t()} | {:more, binary(), Conn.t()} | {:error, term()}
  def read_req_body(%Conn{} = conn, opts), do: Conn.read_body(conn, opts)

  @doc false
  # `Plug.Conn.inform/3` accepts `:ok`, `{:ok, payload}` and `{:error, :not_supported}` and
  # nothing else, so a client that left is `:ok` here as in the send callbacks. Header names
  # may be atoms (the spec says keyword list).
  @spec inform(Conn.t(), 100..199 | {100..199, String.t()}, [
          {atom() | String.t(), String.Chars.t()}
        ]) :: :ok
  def inform(%Conn{} = conn, status, headers) do
    headers = for {name, value} <- headers, do: {to_string(name), to_string(value)}

    case Conn.inform(conn, status, headers) do
      :ok -> :ok
      {:error, :closed} -> :ok
    end
  end

  @doc false
  @spec upgrade(Conn.t(), atom(), term()) :: {:error, :not_supported}
  def upgrade(%Conn{}, _protocol, _opts), do: {:error, :not_supported}

  @doc false
  @spec push(Conn.t(), String.t(), keyword()) :: {:error, :not_supported}
  def push(%Conn{}, _path, _headers), do: {:error, :not_supported}

  @doc false
  @spec get_peer_data(Conn.t()) :: %{
          address: :inet.ip_address(),
          port: :inet.port_number(),
          ssl_cert: nil
        }
  def get_peer_data(%Conn{peer: {address, port}}),
    do: %{address: address, port: port, ssl_cert: nil}

  @doc false
  @spec get_sock_data(Conn.t()) :: %{address: :inet.ip_address(), port: :inet.port_number()}
  def get_sock_data(%Conn{local: {address, port}}), do: %{address: address, port: port}

  @doc false
  # Crier speaks plain TCP only; TLS belongs to the proxy in front of it.
  @spec get_ssl_data(Conn.t()) :: nil
  def get_ssl_data(%Conn{}), do: nil

  @doc false
  @spec get_http_protocol(Conn.t()) :: :"HTTP/1.0" | :"HTTP/1.1"
  def get_http_protocol(%Conn{version: version}), do: version

  @doc false
  # The request as `Plug.Conn` fields, without needing Plug: `Crier.PlugAdapter.run/3` puts
  # them in a `%Plug.Conn{}`. Host and port come from the Host header, which Rust has checked
  # (RFC 9112 section 3.2) and replaced with the target's authority for an absolute-form
  # target (section 3.2.2); the port is 80, http's, when it has none. An HTTP/1.0 request
  # without Host gets host "" and port 80, as under Bandit and Cowboy: the URL the client asked
  # for had no authority, and the socket's address is in `get_sock_data/1`.
  @spec conn_fields(Conn.t()) :: keyword()
  def conn_fields(%Conn{} = conn) do
    {host, port} = host_and_port(conn)
    {remote_ip, _} = conn.peer

    [
      method: conn.method,
      host: host,
      port: port,
      scheme: :http,
      request_path: conn.path,
      path_info:
        for(segment <- :binary.split(conn.path, "/", [:global]), segment != "", do: segment),
      query_string: conn.query,
      req_headers: conn.headers,
      remote_ip: remote_ip
    ]
  end

  defp host_and_port(%Conn{} = conn) do
    case Conn.get_req_header(conn, "host") do
      [host | _] -> split_host(host)
      [] -> {"", @http_port}
    end
  end

  # "example.com", "example.com:8080", "[::1]:4000", "example.com:" (RFC 9110 section 7.2,
  # RFC 3986 section 3.2.3: an empty port is the default one).
  defp split_host("[" <> _ = host) do
    case :binary.split(host, "]:") do
      [address, port] -> {address <> "]", parse_port(port)}
      [_] -> {host, @http_port}
    end
  end

  defp split_host(host) do
    case :binary.split(host, ":") do
      [name, port] -> {name, parse_port(port)}
      [_] -> {host, @http_port}
    end
  end

  defp parse_port(""), do: @http_port
  defp parse_port(digits), do: String.to_integer(digits)

  defp sent({:ok, conn}, _old, _state), do: conn
  defp sent({:error, :closed}, conn, state), do: %{conn | state: state}

  defp content_length(headers) do
    Enum.find_value(headers, fn {name, value} ->
      if String.downcase(name) == "content-length" do
        case Integer.parse(value) do
          {length, ""} when length >= 0 -> length
          _ -> raise ArgumentError, "invalid content-length header: #{inspect(value)}"
        end
      end
    end)
  end

  defp event_stream?(headers) do
    Enum.any?(headers, fn {name, value} ->
      String.downcase(name) == "content-type" and
        value |> String.downcase() |> String.starts_with?("text/event-stream")
    end)
  end
end
