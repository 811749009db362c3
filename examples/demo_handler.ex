defmodule Crier.Demo do
  @moduledoc """
  The demo: a page whose `EventSource` shows a ticking clock and the number of connected
  clients, served by Crier.

    * `GET /` - the page
    * `GET /events` - an SSE stream subscribed to the `clock` topic; its owner process only
      waits to log the close and its reason
    * a ticker process broadcasts the time and the live client count every second

  Run it with `make demo` (port from `PORT`, default 4000).
  """

  @behaviour Crier.Handler
  require Logger

  @page File.read!(Path.join(__DIR__, "demo.html"))

  @impl Crier.Handler
  def call(%Crier.Conn{path: "/"} = conn, _opts) do
    Crier.Conn.send_resp(conn, 200, [{"content-type", "text/html; charset=utf-8"}], @page)
  end

  def call(%Crier.Conn{path: "/events"} = conn, opts) do
    {:ok, conn} = Crier.sse(conn, retry: 2000)
    :ok = Crier.subscribe(conn, ["clock"])
    Crier.broadcast(opts[:server], "clock", tick_event(opts[:server]))
    {ip, port} = conn.peer
    Logger.info("stream #{conn.ref} opened by #{:inet.ntoa(ip)}:#{port}")

    receive do
      {:crier, ref, {:error, reason}} when ref == conn.ref ->
        Logger.info("stream #{conn.ref} closed: #{reason}")
    end
  end

  def call(conn, _opts) do
    Crier.Conn.send_resp(conn, 404, [{"content-type", "text/plain"}], "not found\n")
  end

  @doc "Starts the ticker that broadcasts the clock to `server` every second."
  @spec start_ticker(atom()) :: pid()
  def start_ticker(server) do
    spawn_link(fn -> tick(server) end)
  end

  defp tick(server) do
    Crier.broadcast(server, "clock", tick_event(server))
    Process.sleep(1000)
    tick(server)
  end

  defp tick_event(server) do
    clients = Crier.stats(server).subscribers
    time = DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_iso8601()
    %Crier.Event{event: "tick", data: ~s({"time":"#{time}","clients":#{clients}})}
  end
end
