defmodule Crier.Test.FunHandler do
  @moduledoc """
  A handler that runs the function it is given, so a test writes its handler inline and
  closes over its own pid: `handler: {Crier.Test.FunHandler, fn conn -> ... end}`.
  """
  @behaviour Crier.Handler

  @impl true
  def call(conn, fun), do: fun.(conn)

  @doc """
  Starts a supervised server on a free port that runs `fun` for every request; returns
  `{name, port}`. Call from a test (it uses `ExUnit.Callbacks.start_supervised!/1`).
  """
  @spec start_server((Crier.Conn.t() -> term()), keyword()) :: {atom(), :inet.port_number()}
  def start_server(fun, opts \\ []) do
    name = :"crier_test_#{System.unique_integer([:positive])}"

    ExUnit.Callbacks.start_supervised!(
      {Crier, [name: name, port: 0, handler: {__MODULE__, fun}] ++ opts}
    )

    {name, Crier.port(name)}
  end

  @doc "Takes every message already in the mailbox, oldest first."
  @spec flush_mailbox() :: [term()]
  def flush_mailbox do
    receive do
      message -> [message | flush_mailbox()]
    after
      0 -> []
    end
  end
end
