defmodule Crier.Test.Server do
  @moduledoc """
  Starts one Crier server for one test, under the test's supervisor (so it stops with the
  test), on a free port of 127.0.0.1.

  A test tunes it with tags: `@tag server_opts: [...]` adds server options,
  `@tag handler_opts: [...]` adds options to the `{module, opts}` handler.
  """

  import ExUnit.Callbacks, only: [start_supervised!: 1]

  @doc """
  Starts a server with `opts` (a `:handler` or `:plug`, and any other server option), then
  the `context`'s `:server_opts`, and returns `%{server: name, port: port}` for the test's
  context. Call it from a `setup` block.
  """
  @spec start!(map(), keyword()) :: %{server: atom(), port: :inet.port_number()}
  def start!(context, opts) do
    name = :"crier_test_#{System.unique_integer([:positive])}"

    opts =
      case Keyword.fetch(opts, :handler) do
        {:ok, {module, handler_opts}} when is_list(handler_opts) ->
          handler_opts = handler_opts ++ Map.get(context, :handler_opts, [])
          Keyword.replace!(opts, :handler, {module, handler_opts})

        _ ->
          opts
      end

    start_supervised!(
      {Crier, [name: name, port: 0] ++ opts ++ Map.get(context, :server_opts, [])}
    )

    %{server: name, port: Crier.port(name)}
  end

  @doc "The `Crier.Dispatcher` pids of the running server `name`."
  @spec dispatchers(atom()) :: [pid()]
  def dispatchers(name) do
    {:dictionary, dictionary} = Process.info(Process.whereis(name), :dictionary)
    [supervisor | _] = dictionary[:"$ancestors"]
    for {{Crier.Dispatcher, _}, pid, _, _} <- Supervisor.which_children(supervisor), do: pid
  end
end
