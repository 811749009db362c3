defmodule Crier.Test.HttpHandler do
  @moduledoc """
  The handler of the HTTP tests. Every call first sends `{:handled, pid, conn}` to the test
  process, so a test can assert that a refused request never reached it. Then it runs the
  `:fun` option (`fun.(conn)`, or `fun.(conn, test_pid)`), if given, or answers by path:

    * `/echo` - reads the whole body and answers 200 with it
    * `/stream` - a chunked 200 with the chunks `a` and `b`
    * `/status/NNN` - status NNN with the body `body`
    * anything else - 200 with the body `METHOD PATH` (pipelining tests check the order)

  Start a server with `handler: {Crier.Test.HttpHandler, test: self()}`.
  """

  @behaviour Crier.Handler

  alias Crier.Conn

  @impl Crier.Handler
  def call(conn, opts) do
    send(Keyword.fetch!(opts, :test), {:handled, self(), conn})

    case Keyword.get(opts, :fun) do
      nil -> route(conn)
      fun when is_function(fun, 1) -> fun.(conn)
      fun when is_function(fun, 2) -> fun.(conn, Keyword.fetch!(opts, :test))
    end
  end

  defp route(%Conn{path: "/echo"} = conn) do
    {:ok, body, conn} = Conn.read_body(conn)
    Conn.send_resp(conn, 200, [{"content-type", "application/octet-stream"}], body)
  end

  defp route(%Conn{path: "/stream"} = conn) do
    {:ok, conn} = Conn.send_chunked(conn, 200, [{"content-type", "text/plain"}])
    {:ok, conn} = Conn.chunk(conn, "a")
    Conn.chunk(conn, "b")
  end

  defp route(%Conn{path: "/status/" <> status} = conn) do
    Conn.send_resp(conn, String.to_integer(status), [], "body")
  end

  defp route(conn) do
    Conn.send_resp(conn, 200, [{"content-type", "text/plain"}], "#{conn.method} #{conn.path}")
  end
end
