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

  Each server is a small supervision tree: a listener that owns the Rust side, and
  dispatchers that start the request processes, linked to themselves, so every request
  process ends with its server. Killed, it restarts on the same port at once: the Rust
  listener closes when its owner dies. It logs and ignores messages it does not expect.

  ## Options

  Unknown options and values of the wrong type raise `ArgumentError` before anything
  starts.

  #{Crier.Options.docs()}
  """

  alias Crier.{Boundary, Cluster, Conn, Errors, Event, Native}

  @doc "A child spec that starts a server; see the module docs for the options."
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    config = Crier.Options.validate!(opts)

    # A supervisor: it gives its listener the time to drain (see Crier.Server).
    %{
      id: {Crier, config.name},
      start: {Crier.Server, :start_link, [config]},
      type: :supervisor,
      shutdown: :infinity
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
  def subscribers(name, topic) do
    topic = Boundary.topic!(topic)
    name |> Crier.Server.resource!() |> Native.server_topic_subscribers(topic) |> Errors.unwrap!()
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
  returns. Events broadcast to any of the topics reach it. A topic is a UTF-8 string of at
  most 64 KiB, here and in every function that takes one; anything else, an improper list
  included, raises `ArgumentError`.

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

  def subscribe(%Conn{} = conn, topics, opts) do
    many? = Boundary.topics!(topics)

    last_event_id =
      Keyword.get_lazy(opts, :last_event_id, fn ->
        conn |> Conn.get_req_header("last-event-id") |> List.first()
      end)

    result = Boundary.call(many?, :conn_subscribe, [conn.resource, topics, last_event_id])

    case Errors.unwrap!(result) do
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
    conn.resource |> Native.conn_unsubscribe(Boundary.topic!(topic)) |> Errors.unwrap!()
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
      Boundary.topic!(topic)

      unless String.valid?(topic), do: raise(ArgumentError, "topic must be a UTF-8 string")

      Cluster.publish(name, topic, event)
    else
      :ok = Boundary.broadcast!(resource, topic, event)
    end
  end

  @doc """
  Sets how many events `topic` keeps for `Last-Event-ID` replay (0 turns it off). Replayed
  events do not count against a stream's `:write_queue_bytes`: the ring bounds them.
  """
  @spec set_replay(atom(), String.t(), non_neg_integer()) :: :ok
  def set_replay(name, topic, size) do
    topic = Boundary.topic!(topic)

    unless is_integer(size) and size >= 0 do
      raise ArgumentError, "replay size must be a non-negative integer, got: #{inspect(size)}"
    end

    name |> Crier.Server.resource!() |> Native.server_set_replay(topic, size) |> Errors.unwrap!()
  end
end
