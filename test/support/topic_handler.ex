defmodule Crier.Test.TopicHandler do
  @moduledoc """
  A handler for topic tests. `GET /topics/a,b` starts an SSE stream and subscribes it to
  topics `a` and `b` (with the request's `Last-Event-ID`, or `?last=ID` passed as the
  `:last_event_id` option), then:

    * by default tells the test `{:detached, pid, ref}` and returns: the process exits and
      the stream lives on in Rust alone;
    * with `?keep`, tells the test `{:subscribed, pid, conn}` and stays, forwarding
      `{:crier, ref, msg}` as `{:crier_msg, pid, ref, msg}`, and obeying
      `{:unsubscribe, topic}` (replies `{:unsubscribed, pid}`), `:close` and `:return`.

  `GET /plain` streams without subscribing; `GET /unstarted` reports
  `{:unstarted, result}` of a subscribe before any `sse/2`. Start a server with
  `handler: {Crier.Test.TopicHandler, test: self()}`; `retry: ms` in the opts goes to
  `Crier.sse/2`.

  `connect/4` and `connect_detached/3` open a stream from the test side and wait for the
  handler's report.
  """

  @behaviour Crier.Handler

  import ExUnit.Assertions

  alias Crier.Test.SseClient

  @doc """
  Opens an SSE stream to `path` on `port` (`opts` go to `Crier.Test.SseClient.connect/3`) and
  asserts the handler's report `report` (`:detached`, `:subscribed` or `:plain`, as the path
  asks). Returns `{client, handler_pid, ref_or_conn}`.
  """
  @spec connect(:inet.port_number(), String.t(), :detached | :subscribed | :plain, keyword()) ::
          {term(), pid(), term()}
  def connect(port, path, report, opts \\ []) do
    client = SseClient.connect(port, path, opts)
    assert_receive {^report, handler, info}
    {client, handler, info}
  end

  @doc """
  Opens a stream to a `/topics/...` path that hands it to Rust (see `connect/4`) and waits
  until its handler process has exited. Returns the client.
  """
  @spec connect_detached(:inet.port_number(), String.t(), keyword()) :: term()
  def connect_detached(port, path, opts \\ []) do
    {client, handler, _ref} = connect(port, path, :detached, opts)
    ref = Process.monitor(handler)
    assert_receive {:DOWN, ^ref, :process, ^handler, reason} when reason in [:normal, :noproc]
    client
  end

  @impl Crier.Handler
  def call(%Crier.Conn{path: "/topics/" <> names} = conn, opts) do
    test = Keyword.fetch!(opts, :test)
    query = URI.decode_query(conn.query)
    {:ok, conn} = Crier.sse(conn, Keyword.take(opts, [:retry]))
    topics = String.split(names, ",")

    subscribe_opts =
      case query do
        %{"last" => id} -> [last_event_id: id]
        _ -> []
      end

    case Crier.subscribe(conn, topics, subscribe_opts) do
      :ok when is_map_key(query, "keep") ->
        send(test, {:subscribed, self(), conn})
        loop(conn, test)

      :ok ->
        send(test, {:detached, self(), conn.ref})

      {:error, :closed} ->
        send(test, {:subscribe_failed, self(), :closed})
    end
  end

  def call(%Crier.Conn{path: "/plain"} = conn, opts) do
    test = Keyword.fetch!(opts, :test)
    {:ok, conn} = Crier.sse(conn, Keyword.take(opts, [:retry]))
    send(test, {:plain, self(), conn})
    loop(conn, test)
  end

  def call(%Crier.Conn{path: "/unstarted"} = conn, opts) do
    result =
      try do
        Crier.subscribe(conn, "t")
      rescue
        error -> error
      end

    send(Keyword.fetch!(opts, :test), {:unstarted, result})
    Crier.Conn.send_resp(conn, 204, [], "")
  end

  def call(conn, _opts), do: Crier.Conn.send_resp(conn, 404, [], "not found")

  defp loop(conn, test) do
    receive do
      {:crier, ref, msg} ->
        send(test, {:crier_msg, self(), ref, msg})
        loop(conn, test)

      {:unsubscribe, topic} ->
        :ok = Crier.unsubscribe(conn, topic)
        send(test, {:unsubscribed, self()})
        loop(conn, test)

      {:run, fun} ->
        send(test, {:ran, self(), fun.(conn)})
        loop(conn, test)

      :close ->
        Crier.Conn.close(conn)
        loop(conn, test)

      :return ->
        :ok
    end
  end
end
