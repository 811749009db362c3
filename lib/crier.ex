defmodule Crier do
  @moduledoc """
  Server-Sent Events for Elixir, served by a Rust core that tells you the moment a client
  is gone.

  Add a server to your supervision tree:

      children = [
        {Crier, name: MyApp.Events, port: 4000, handler: {MyApp.EventsHandler, []}},
        # or any Plug, unchanged (needs Plug loaded):
        {Crier, name: MyApp.Web, port: 4001, plug: {MyApp.Router, []}}
      ]

  Each request runs in a fresh process (see `Crier.Handler` and `Crier.Conn`). When the
  client leaves, that process receives `{:crier, conn.ref, {:error, reason}}` within
  milliseconds (`on_close: :message`, the default for handlers) or exits with
  `{:shutdown, reason}` (`on_close: :exit`, the default for plugs), and every later write
  returns `{:error, :closed}`. Reasons: `:closed` (the client closed, or a write failed),
  `:timeout` (dead peer, or a full queue past `:send_timeout`), `:overflow` (a subscriber
  too slow for a broadcast), `:shutdown` (the server is stopping).

  ## Options

    * `:name` - required; the server's name, used by `broadcast/4`, `stats/1`, `port/1`.
    * `:handler` or `:plug` - `{module, opts}` or `module`; exactly one.
    * `:port` - TCP port; 0 picks a free one (see `port/1`). Default is 4000.
    * `:ip` - address to listen on, a tuple or a string. Default is `{127, 0, 0, 1}`.
    * `:on_close` - `:message` or `:exit`. Default is `:message` for handlers and `:exit`
      for plugs.
    * `:max_request_line` - bytes; longer request lines get 414. Default is 8192.
    * `:max_header_bytes` - bytes of header block; more gets 431. Default is 16384.
    * `:max_headers` - header fields; more get 431. Default is 100.
    * `:max_body` - bytes of request body; more gets 413. Default is 8388608 (8 MiB).
    * `:header_timeout` - ms from a request's first byte until its head is complete
      (absolute, not per read); later gets 408. Default is 10000.
    * `:keepalive_timeout` - ms a keep-alive connection may idle between requests.
      Default is 60000.
    * `:write_queue_bytes` - bytes a stream may have queued before `Crier.Conn.chunk/2`
      waits. A subscriber is dropped with `:overflow` when its socket takes no more while
      more than this is left of its broadcasts, or when a burst would queue twice this
      before it could write (the most a stopped reader holds). Default is 262144 (256 KiB).
    * `:send_timeout` - ms a full queue may make no progress before the stream closes with
      `:timeout`. Default is 15000.
    * `:heartbeat` - ms of idleness after which an SSE stream gets a `:` comment line, or
      `nil` for none. Default is 15000.
    * `:tcp_keepalive` - ms of idleness before TCP keepalive probes, or `nil`. Default is
      30000.
    * `:tcp_user_timeout` - ms sent data may stay unacknowledged before the kernel drops the
      connection (`TCP_USER_TIMEOUT`), or `nil`. Default is 30000.
    * `:shutdown_timeout` - ms queues may drain when the server stops. Default is 5000.
    * `:final_event` - a `Crier.Event` sent to every SSE stream when the server stops.
      Default is none.
    * `:max_connections` - open connections; the next gets 503. Default is 1000000.
    * `:backlog` - listen backlog. Default is 4096.
    * `:replay` - events each topic keeps for `Last-Event-ID` replay, unless set per topic
      with `set_replay/3`. Default is 0 (off).

  TLS (HTTPS) is on when a certificate and its key are given; a certificate or key that
  cannot be used, or that do not belong together, makes `start_link/1` return
  `{:error, {:tls, why}}`. A handshake must finish within `:header_timeout` of the accept.

    * `:certfile` or `:cert` - the certificate chain, end-entity first: a PEM file's path,
      or PEM, DER or a list of DER.
    * `:keyfile` or `:key` - its private key: a PEM file's path, or PEM, or
      `{:RSAPrivateKey | :ECPrivateKey | :PrivateKeyInfo, der}` as `:ssl` takes it.
    * `:alpn` - the protocols offered, in order of preference, of `"h2"` and `"http/1.1"`.
      Default is `["h2", "http/1.1"]`.
  """

  alias Crier.{Cluster, Conn, Errors, Event, Native}

  @doc "A child spec that starts a server; see the module docs for the options."
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    config = Crier.Options.validate!(opts)

    %{
      id: {Crier, config.name},
      start: {Crier.Server, :start_link, [config]},
      type: :worker,
      # The server drains for :shutdown_timeout; give it that plus a margin before a kill.
      shutdown: config.shutdown_timeout + 10_000
    }
  end

  @doc """
  Starts a server linked to the caller. Returns `{:error, reason}` when it cannot listen
  (`:eaddrinuse`, `:eaddrnotavail`, `:eacces`, ...).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    opts |> Crier.Options.validate!() |> Crier.Server.start_link()
  end

  @doc "The port the server `name` listens on."
  @spec port(atom()) :: :inet.port_number()
  def port(name), do: name |> Crier.Server.resource!() |> Native.server_port()

  @doc """
  The server's counters, read from Rust atomics (cheap to call at any rate).

  Gauges: `:connections` (open TCP connections), `:streams` (responses being streamed,
  owned or subscribed), `:subscribers` (streams subscribed to a topic), `:topics`,
  `:tasks` (connection tasks alive), `:queued_bytes` (bytes in write queues, not yet
  written: the memory streams hold). Totals: `:requests`, `:rejected` (refused before any
  handler), `:bytes_written`, `:writes` (write system calls; each carries every queued
  chunk that fits), and `:closes`, a map of stream closes by reason (`:closed`,
  `:timeout`, `:overflow`, `:shutdown`, `:owner_gone`). Subscribers of one topic:
  `subscribers/2`.
  """
  @spec stats(atom()) :: map()
  def stats(name), do: name |> Crier.Server.resource!() |> Native.server_stats()

  @doc """
  How many streams are subscribed to `topic` on server `name` (0 for a topic nobody holds).
  Counted in Rust as subscribers come and go; a `subscribe/3` that has just returned may not
  be counted yet.
  """
  @spec subscribers(atom(), String.t()) :: non_neg_integer()
  def subscribers(name, topic) when is_binary(topic) do
    name |> Crier.Server.resource!() |> Native.server_topic_subscribers(topic)
  end

  @doc """
  Starts an SSE response: status 200 with `content-type: text/event-stream`,
  `cache-control: no-cache` and `x-accel-buffering: no`, and heartbeats while idle.

  Options: `:headers` (extra headers), `:retry` (ms; sent as the first event's `retry:`),
  `:on_close` (`:message` or `:exit`: how this stream's owner learns of the close, see
  `Crier.Conn.on_close/2`; default is the server's `:on_close`).
  """
  @spec sse(Conn.t(), keyword()) :: {:ok, Conn.t()} | {:error, :closed}
  def sse(%Conn{} = conn, opts \\ []) do
    with :ok <- set_on_close(conn, Keyword.get(opts, :on_close)) do
      start_sse(conn, opts)
    end
  end

  defp set_on_close(_conn, nil), do: :ok
  defp set_on_close(conn, mode), do: Conn.on_close(conn, mode)

  defp start_sse(conn, opts) do
    headers =
      [
        {"content-type", "text/event-stream"},
        {"cache-control", "no-cache"},
        {"x-accel-buffering", "no"}
      ] ++ Keyword.get(opts, :headers, [])

    with {:ok, conn} <- Conn.send_chunked(conn, 200, headers, true) do
      case Keyword.get(opts, :retry) do
        nil -> {:ok, conn}
        retry -> send_event(conn, %Event{retry: retry})
      end
    end
  end

  @doc """
  Sends one event on an SSE stream. Raises `ArgumentError` for an event that cannot be
  encoded (see `Crier.Event`).
  """
  @spec send_event(Conn.t(), Event.t()) :: {:ok, Conn.t()} | {:error, :closed}
  def send_event(%Conn{} = conn, event) do
    Conn.chunk(conn, Event.encode(event))
  end

  @doc """
  Hands the stream to `topics`: it lives on in Rust, with no process, after the handler
  returns. Events broadcast to any of the topics reach it.

  With a `Last-Event-ID` request header (or the `:last_event_id` option, for clients that
  pass it in the query string), the events after that id still in the topics' replay rings
  are sent first, then the live ones, with no gap and no duplicate. Events the server
  numbers itself (those broadcast without an `:id` to a topic with a ring) take the next
  number of one sequence per server, so one id says where a client was in all of its
  topics, and the missed events of several topics come merged in the order they were
  broadcast. An id no ring holds any more, if it is a number, is read as such a sequence
  number; any other unknown id gets the whole rings. Numbers restart at 1 with the server.

  A cluster id (`<epoch>-<seq>` with an epoch of 10 base-36 digits, the id of a
  `cluster: true` broadcast, see `Crier.Cluster`; an id the application gave that the rings
  hold is taken as the application's) is replayed exactly on any node: the cluster events
  of the topics after it that the client has not seen, none twice. If this node is behind the client's old node, the stream waits
  (up to 2 s) for the events the client has seen. If the node cannot prove an exact replay
  (the id is from an earlier epoch, or older than what the node and its rings hold), the
  stream starts live and its first event has type `crier-gap` (data `"epoch"`, `"behind"` or
  `"ahead"`, id the position it continues from): the client should refetch its state.
  """
  @spec subscribe(Conn.t(), [String.t()] | String.t(), keyword()) :: :ok | {:error, :closed}
  def subscribe(conn, topics, opts \\ [])

  def subscribe(%Conn{} = conn, topic, opts) when is_binary(topic),
    do: subscribe(conn, [topic], opts)

  def subscribe(%Conn{} = conn, topics, opts) when is_list(topics) do
    last_event_id =
      Keyword.get_lazy(opts, :last_event_id, fn ->
        conn |> Conn.get_req_header("last-event-id") |> List.first()
      end)

    case Native.conn_subscribe(conn.resource, topics, last_event_id) |> Errors.unwrap!() do
      :ok ->
        :ok

      {:error, :closed} ->
        {:error, :closed}

      {:error, :not_streaming} ->
        raise ArgumentError, "subscribe/3 needs a stream: call sse/2 first"
    end
  end

  @doc """
  Removes the stream from `topic`. A stream with no topic and no owner ends. A conn whose
  exchange is over (kept from an earlier request of a keep-alive connection) gets
  `{:error, :closed}` and changes nothing.
  """
  @spec unsubscribe(Conn.t(), String.t()) :: :ok | {:error, :closed}
  def unsubscribe(%Conn{} = conn, topic) do
    conn.resource |> Native.conn_unsubscribe(topic) |> Errors.unwrap!()
  end

  @doc """
  Sends `event` to every subscriber of `topic` on server `name`. The event is encoded once
  and its bytes shared by all subscribers; the call returns at once and the fan-out runs in
  Rust. A subscriber whose queue is full is dropped with `:overflow`.

  With `cluster: true`, the servers of the same name on every connected node broadcast it,
  this one included, all in the one order of the cluster's sequencer (see `Crier.Cluster`):
  the event gets the id `<epoch>-<seq>` unless it has one, the same on every node, and it
  reaches this node's subscribers a hop later than a local broadcast does.
  """
  @spec broadcast(atom(), String.t(), Event.t() | map(), keyword()) :: :ok
  def broadcast(name, topic, event, opts \\ []) do
    resource = Crier.Server.resource!(name)

    if Keyword.get(opts, :cluster, false) do
      # Checked here, so a bad event or topic raises in the caller, not on every node; the
      # event goes through the local server (which `resource!/1` found running) to the
      # sequencer.
      _ = Event.encode(event)

      unless is_binary(topic) and String.valid?(topic),
        do: raise(ArgumentError, "topic must be a UTF-8 string")

      Cluster.publish(name, topic, event)
    else
      :ok = resource |> Native.server_broadcast(topic, event) |> Errors.unwrap!()
    end
  end

  @doc """
  Sets how many events `topic` keeps for `Last-Event-ID` replay (0 turns it off). Replayed
  events do not count against a stream's `:write_queue_bytes`: the ring bounds them.
  """
  @spec set_replay(atom(), String.t(), non_neg_integer()) :: :ok
  def set_replay(name, topic, size) do
    name |> Crier.Server.resource!() |> Native.server_set_replay(topic, size) |> Errors.unwrap!()
  end
end
