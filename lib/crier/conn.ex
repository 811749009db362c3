defmodule Crier.Conn do
  @moduledoc """
  One request and its response, as the handler process sees it.

  A `Crier.Conn` is created for each request and passed to the handler, which runs in a fresh
  process that owns it. Calls that write only queue bytes for the Rust side, which writes
  them; none blocks a scheduler. When the client goes away, the owner receives
  `{:crier, conn.ref, {:error, :closed}}` (or ends with `{:shutdown, :closed}` when
  `on_close: :exit`), and from then on every write returns `{:error, :closed}`.

  Fields:

    * `:ref` - tells this stream's messages apart: `{:crier, ref, message}`
    * `:method`, `:path`, `:query` - the request line (`query` without the `?`)
    * `:version` - `:"HTTP/1.1"`, `:"HTTP/1.0"` or `:"HTTP/2"` (one stream of an HTTP/2
      connection over TLS: each stream is its own conn, told of its own close)
    * `:headers` - request headers, names lowercased, in order; for an absolute-form target
      (`GET http://host:port/path`) `host` holds the target's authority, whatever the client
      sent as Host (RFC 9112 section 3.2.2)
    * `:peer`, `:local` - `{ip_tuple, port}` of the client and of the server
    * `:tls` - `nil` over plain TCP; over TLS, what the handshake agreed, with the names of
      `:ssl.connection_information/1`: `protocol` (`:"tlsv1.3"` or `:"tlsv1.2"`),
      `cipher_suite` (its IANA name), `negotiated_protocol` (the ALPN choice, or `nil`) and
      `sni_hostname` (the server name the client asked for, or `nil`)
    * `:server` - the name of the `Crier` server that accepted the request
    * `:owner` - the process that owns the conn, the one running the handler; the calls that
      write or read the exchange raise `ArgumentError` from any other process
    * `:state` - `:unset`, `:chunked` or `:sent`
    * `:assigns` - free for the handler
  """

  alias Crier.{Boundary, Errors, Native}

  @enforce_keys [:ref, :resource]
  defstruct [
    :ref,
    :resource,
    :server,
    :method,
    :path,
    :query,
    :version,
    :peer,
    :local,
    :owner,
    :tls,
    headers: [],
    state: :unset,
    send_timeout: 15_000,
    assigns: %{}
  ]

  @type t :: %__MODULE__{
          ref: non_neg_integer(),
          resource: reference(),
          server: atom() | nil,
          method: String.t(),
          path: String.t(),
          query: String.t(),
          version: :"HTTP/1.0" | :"HTTP/1.1" | :"HTTP/2",
          headers: [{String.t(), String.t()}],
          peer: {:inet.ip_address(), :inet.port_number()},
          local: {:inet.ip_address(), :inet.port_number()},
          owner: pid(),
          tls: keyword() | nil,
          state: :unset | :chunked | :sent,
          send_timeout: timeout(),
          assigns: map()
        }

  @type headers :: [{String.t(), String.t()}]

  @typedoc """
  A response status: a code, or `{code, reason_phrase}` to write that phrase in the status
  line instead of Crier's own (every registered code has one; others get none). A phrase is
  tab, space, visible ASCII or bytes above 127 (RFC 9112 section 4); anything else, like CR
  or LF, raises `ArgumentError`.
  """
  @type status :: 100..999 | {100..999, String.t()}

  @doc false
  # Called by the request process, which owns the conn from then on.
  @spec new(reference(), tuple(), atom(), timeout()) :: t()
  def new(
        resource,
        {ref, method, path, query, version, headers, peer, local, tls},
        server,
        send_timeout
      ) do
    %__MODULE__{
      ref: ref,
      resource: resource,
      server: server,
      method: method,
      path: path,
      query: query,
      version: version,
      headers: headers,
      peer: peer,
      local: local,
      tls: tls,
      owner: self(),
      send_timeout: send_timeout
    }
  end

  @doc """
  Returns the values of request header `name` (lowercase), in order.
  """
  @spec get_req_header(t(), String.t()) :: [String.t()]
  def get_req_header(%__MODULE__{headers: headers}, name) do
    for {^name, value} <- headers, do: value
  end

  @doc """
  Sends the response head of a streamed body: `transfer-encoding: chunked` on HTTP/1.1,
  delimited by the close on HTTP/1.0. Headers keep the case they are given in; `date` is
  added unless present; `content-length` and `transfer-encoding` are the server's.

  Returns `{:error, :closed}` if the client already left. Raises `ArgumentError` for a status
  outside 100..999, a bad reason phrase (see `t:status/0`) or a header with CR, LF or NUL
  (nothing is sent; the conn stays usable).
  """
  @spec send_chunked(t(), status(), headers()) :: {:ok, t()} | {:error, :closed}
  def send_chunked(conn, status, headers \\ []) do
    send_chunked(conn, status, headers, false)
  end

  @doc false
  # With `sse?`, the stream gets heartbeats while idle (`Crier.sse/2`, and Plug responses
  # with `content-type: text/event-stream`). One name for one operation, as in Rust.
  @spec send_chunked(t(), status(), headers(), boolean()) :: {:ok, t()} | {:error, :closed}
  def send_chunked(%__MODULE__{} = conn, status, headers, sse?) do
    check_owner!(conn, "send_chunked/3")

    status
    |> check_head!(headers)
    |> Boundary.call(:conn_send_chunked, [conn.resource, status, headers, sse?])
    |> written(conn, :chunked)
  end

  @doc """
  Sends a complete response with `content-length`. HEAD requests, 204 and 304 get the head
  alone; to HEAD, an empty `body` keeps a `content-length` given in `headers` (the size the
  GET response would have) or sends none. Returns `{:error, :closed}` if the client already
  left; raises `ArgumentError` for a bad status, header, or a body that is not iodata.
  """
  @spec send_resp(t(), status(), headers(), iodata()) :: {:ok, t()} | {:error, :closed}
  def send_resp(%__MODULE__{} = conn, status, headers, body) do
    check_owner!(conn, "send_resp/4")
    large_head? = check_head!(status, headers)

    (large_head? or Boundary.large_iodata?(body))
    |> Boundary.call(:conn_send_resp, [conn.resource, status, headers, body])
    |> written(conn, :sent)
  end

  @doc """
  Sends a response head with `content-length: length`; the body follows through `chunk/2`
  calls, written as given (no chunk framing), which must add up to exactly `length` bytes.
  A longer body raises `ArgumentError`; a shorter one closes the connection after the
  response. This streams a file without holding it in memory.
  """
  @spec send_head(t(), status(), headers(), non_neg_integer()) ::
          {:ok, t()} | {:error, :closed}
  def send_head(%__MODULE__{} = conn, status, headers, length) do
    check_owner!(conn, "send_head/4")
    large_head? = check_head!(status, headers)

    unless is_integer(length) and length >= 0 do
      raise ArgumentError, "length must be a non-negative integer, got: #{inspect(length)}"
    end

    large_head?
    |> Boundary.call(:conn_send_head, [conn.resource, status, headers, length])
    |> written(conn, :chunked)
  end

  @doc """
  Sends an informational (1xx) response before the final one, such as 103 Early Hints.
  On HTTP/2 it is a HEADERS frame of its own (HTTP/2 has no reason phrase); HTTP/1.0
  clients get nothing, as RFC 9110 says.
  """
  @spec inform(t(), 100..199 | {100..199, String.t()}, headers()) :: :ok | {:error, :closed}
  def inform(%__MODULE__{} = conn, status, headers \\ []) do
    check_owner!(conn, "inform/3")

    result =
      Boundary.call(check_head!(status, headers), :conn_inform, [conn.resource, status, headers])

    case written(result, conn, conn.state) do
      {:ok, _conn} -> :ok
      error -> error
    end
  end

  @doc """
  Queues `data` as one chunk. Returns once it is queued; when the stream's write queue is
  full it waits (in a `receive`, not on a scheduler) until Rust has written enough, up to
  the server's `:send_timeout`, after which the stream closes with `:timeout`.

  Returns `{:error, :closed}` once the stream is closed, whatever the reason.

  Call it from the process that owns the conn (the one running the handler): the notice
  that the queue has room again goes to the owner, so a call from any other process raises
  `ArgumentError` at once. The wait leaves nothing behind in the mailbox, whether it ends
  with room or with the timeout.
  """
  @spec chunk(t(), iodata()) :: {:ok, t()} | {:error, :closed}
  def chunk(%__MODULE__{} = conn, data) do
    check_owner!(conn, "chunk/2")
    deadline = deadline(conn.send_timeout)
    push_chunk(conn, data, deadline)
  end

  defp push_chunk(conn, data, deadline) do
    pushed =
      if Boundary.large_iodata?(data),
        do: Native.dirty(:conn_chunk, [conn.resource, data]),
        else: Native.conn_chunk(conn.resource, data)

    case pushed do
      :ok ->
        {:ok, conn}

      :full ->
        wait_writable(conn, data, deadline)

      {:error, :not_streaming} ->
        raise ArgumentError, "chunk/2 needs a chunked response: call send_chunked/3 first"

      other ->
        other |> Errors.unwrap!() |> closed_or_raise()
    end
  end

  # Rust sends `{:crier, ref, :writable}` once, only because this call asked for it; a timed
  # out wait withdraws the request and takes back a notice that raced it, so nothing is
  # left in the mailbox.
  defp wait_writable(%{ref: ref} = conn, data, deadline) do
    receive do
      {:crier, ^ref, :writable} -> push_chunk(conn, data, deadline)
    after
      remaining(deadline) ->
        withdraw_wait(conn, :writable)
        Native.conn_close(conn.resource, :timeout)
        {:error, :closed}
    end
  end

  # A wake-up Rust claimed is sent right after its lock is released: it arrives within
  # microseconds. The bound only keeps a lost message from hanging the caller.
  @wake_in_flight 1_000

  # Withdraws a wait that timed out. `:woken` says the wake-up was claimed before the
  # withdrawal: Rust sends it just after, so it is taken here rather than left behind.
  defp withdraw_wait(%{ref: ref} = conn, what) do
    case Native.conn_cancel_wait(conn.resource) do
      :ok ->
        :ok

      :woken ->
        receive do
          {:crier, ^ref, ^what} -> :ok
        after
          @wake_in_flight -> :ok
        end
    end
  end

  @doc """
  Reads the request body, with `Plug.Conn.read_body/2`'s contract.

  Options: `:length` (most bytes returned by this call, default 8,000,000), `:read_length`
  (bytes taken from the socket buffer at a time, default 1,000,000) and `:read_timeout`
  (how long to wait for more bytes, default 15,000 ms). A call always takes at least one
  piece, so `length: 0` returns the bytes already there, up to `:read_length` (waiting for
  the first ones if none came yet), as under Cowboy.

  Returns `{:ok, body, conn}` when the body is complete, `{:more, partial, conn}` when
  `:length` was reached first or `:read_timeout` passed after some bytes came (call again
  for the rest), `{:error, :timeout}` when none came, `{:error, :too_large}` when the body
  is past the server's `:max_body`, `{:error, :bad_request}` for broken chunked framing, or
  `{:error, :closed}`. After a `:too_large` or `:bad_request` the server has already
  answered 413 or 400 (unless a response was started) and closes the connection.
  """
  @spec read_body(t(), keyword()) ::
          {:ok, binary(), t()} | {:more, binary(), t()} | {:error, term()}
  def read_body(%__MODULE__{} = conn, opts \\ []) do
    check_owner!(conn, "read_body/2")
    length = Keyword.get(opts, :length, 8_000_000)
    read_length = Keyword.get(opts, :read_length, 1_000_000)
    read_timeout = Keyword.get(opts, :read_timeout, 15_000)
    read_loop(conn, length, read_length, read_timeout, [])
  end

  # Takes pieces of at most `read_length` bytes until `remaining` bytes came or the body
  # ended. The first piece is taken whatever `remaining` is: see the doc on `length: 0`.
  defp read_loop(conn, remaining, read_length, read_timeout, acc) do
    piece = if remaining > 0, do: min(remaining, read_length), else: read_length

    case Native.conn_read_body(conn.resource, piece) do
      {:ok, bytes, true} ->
        {:ok, IO.iodata_to_binary([acc | bytes]), conn}

      {:ok, bytes, false} ->
        remaining = remaining - byte_size(bytes)

        if remaining > 0,
          do: read_loop(conn, remaining, read_length, read_timeout, [acc | bytes]),
          else: {:more, IO.iodata_to_binary([acc | bytes]), conn}

      :wait ->
        ref = conn.ref

        receive do
          {:crier, ^ref, :body} -> read_loop(conn, remaining, read_length, read_timeout, acc)
        after
          read_timeout ->
            withdraw_wait(conn, :body)

            # Bytes already taken from the body are the caller's, not lost to the timeout.
            if IO.iodata_length(acc) > 0,
              do: {:more, IO.iodata_to_binary(acc), conn},
              else: {:error, :timeout}
        end

      {:error, reason} ->
        {:error, reason}
    end
  end

  @doc """
  Chooses how the calling process, which must own `conn`, learns that its stream closed,
  overriding the server's `:on_close` for this stream only: `:message` sends
  `{:crier, conn.ref, {:error, reason}}`, `:exit` ends the process with
  `{:shutdown, reason}`. Returns `{:error, :closed}` if the stream already closed.
  """
  @spec on_close(t(), :message | :exit) :: :ok | {:error, :closed}
  def on_close(%__MODULE__{} = conn, mode) when mode in [:message, :exit] do
    check_owner!(conn, "on_close/2")

    case Native.conn_set_owner(conn.resource, self(), mode) do
      :ok -> :ok
      other -> other |> Errors.unwrap!() |> closed_or_raise()
    end
  end

  def on_close(%__MODULE__{}, mode),
    do: raise(ArgumentError, "on_close must be :message or :exit, got: #{inspect(mode)}")

  @doc """
  Closes the stream from the server's side. The owner is told like for any other close.
  """
  @spec close(t()) :: :ok
  def close(%__MODULE__{} = conn) do
    Native.conn_close(conn.resource, :closed)
  end

  @doc false
  # Shared by every call that writes: maps the NIF's answer to the public one.
  def written(:ok, conn, state), do: {:ok, %{conn | state: state}}
  def written({:error, :closed}, _conn, _state), do: {:error, :closed}

  def written({:error, :already_sent}, _conn, _state),
    do: raise(RuntimeError, "a response was already sent for this request")

  def written(other, _conn, _state), do: other |> Errors.unwrap!() |> closed_or_raise()

  defp closed_or_raise({:error, :closed}), do: {:error, :closed}

  defp closed_or_raise(other),
    do: raise(RuntimeError, "unexpected reply from Crier: #{inspect(other)}")

  # Wake-ups (room in the write queue, body bytes) and the close go to the owner, and Plug
  # looks for {:plug_conn, :sent} in the caller's mailbox: a call from another process would
  # wait for a notice it never gets and then time out a healthy stream. Refused at once, as
  # Bandit's adapter does.
  defp check_owner!(%__MODULE__{owner: owner}, _call) when owner == self(), do: :ok

  defp check_owner!(%__MODULE__{owner: owner}, call) do
    raise ArgumentError,
          "Crier.Conn.#{call} must be called by the process that owns the conn " <>
            "(#{inspect(owner)}, the one running the handler), not from #{inspect(self())}"
  end

  # Raises for a bad status or header list; true when the head is large enough for a dirty
  # scheduler (see Crier.Boundary).
  defp check_head!(status, headers) do
    unless is_integer(status) or
             match?({code, phrase} when is_integer(code) and is_binary(phrase), status) do
      raise ArgumentError,
            "status must be an integer in 100..999 or a {status, reason_phrase} tuple, " <>
              "got: #{inspect(status)}"
    end

    Boundary.headers!(headers)
  end

  defp deadline(:infinity), do: :infinity
  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
