defmodule Crier.Handler do
  @moduledoc """
  The behaviour of a native Crier handler.

  Each request runs `c:call/2` in a fresh process that owns the connection. The process is
  monitored: when it ends, an unfinished response ends with it (a chunked response gets its
  last chunk if the handler returned normally), unless the stream was handed to a topic
  with `Crier.subscribe/3`.

  A handler that raises, throws or returns before any response gets its client a 500, and
  the connection closes after it (its state is unknown); the error is logged. A process
  that dies before responding (killed, or ended by a linked process) gets its client the
  same 500 and close from Rust, and its exit reason is logged (by the `Crier.Dispatcher`
  that started it). Once a response started, any of these cuts
  it short: what was sent goes out, then the connection closes without the body's end.
  Calls on the conn from another process raise `ArgumentError` (see `Crier.Conn`).

      defmodule MyApp.Clock do
        @behaviour Crier.Handler

        @impl true
        def call(%Crier.Conn{path: "/clock"} = conn, _opts) do
          {:ok, conn} = Crier.sse(conn)
          tick(conn)
        end

        def call(conn, _opts), do: Crier.Conn.send_resp(conn, 404, [], "not found")

        defp tick(conn) do
          receive do
            {:crier, ref, {:error, _reason}} when ref == conn.ref -> :ok
          after
            1000 ->
              {:ok, conn} = Crier.send_event(conn, %Crier.Event{data: DateTime.utc_now() |> to_string()})
              tick(conn)
          end
        end
      end
  """

  @doc "Handles one request. The return value is ignored."
  @callback call(conn :: Crier.Conn.t(), opts :: term()) :: term()
end
