defmodule Crier.Test.ControlHandler do
  @moduledoc """
  A handler the test drives from outside: it reports `{:called, pid, conn}` to the test
  process, then runs what it is sent and forwards every Crier message it receives.

    * `{:run, fun}` - runs `fun.(conn)`, replies `{:ran, pid, result}`; when the result is
      `{:ok, %Crier.Conn{}}` the new conn is kept
    * `:return` - returns from `call/2` (the response is finished)
    * any `{:crier, ref, msg}` - forwarded as `{:crier_msg, pid, ref, msg}`

  Start a server with `handler: {Crier.Test.ControlHandler, test: self()}`.
  """

  @behaviour Crier.Handler

  @impl Crier.Handler
  def call(conn, opts) do
    test = Keyword.fetch!(opts, :test)
    send(test, {:called, self(), conn})
    loop(conn, test)
  end

  defp loop(conn, test) do
    receive do
      {:run, fun} ->
        result = fun.(conn)
        send(test, {:ran, self(), result})

        case result do
          {:ok, %Crier.Conn{} = new_conn} -> loop(new_conn, test)
          _ -> loop(conn, test)
        end

      :return ->
        :ok

      {:crier, ref, msg} ->
        send(test, {:crier_msg, self(), ref, msg})
        loop(conn, test)
    end
  end

  @doc "Runs `fun` in handler `pid` and returns its result."
  @spec run(pid(), (Crier.Conn.t() -> term()), timeout()) :: term()
  def run(pid, fun, timeout \\ 5_000) do
    send(pid, {:run, fun})

    receive do
      {:ran, ^pid, result} -> result
    after
      timeout -> raise "handler #{inspect(pid)} did not answer"
    end
  end
end
