defmodule Crier.Test.LogForwarder do
  @moduledoc """
  A `:logger` handler that sends each event's text to a test process as `{:log, text}`, so
  a test can wait for what another process logged (`assert_logged/1`) with a deadline.
  """

  import ExUnit.Assertions, only: [flunk: 1]

  @doc "Forwards every log event to the calling test process until the test ends."
  @spec forward_logs() :: :ok
  def forward_logs do
    id = :"crier_logs_#{System.unique_integer([:positive])}"
    :ok = :logger.add_handler(id, __MODULE__, %{config: %{test: self()}})
    ExUnit.Callbacks.on_exit(fn -> :logger.remove_handler(id) end)
  end

  @doc "Waits up to 5 s for a forwarded log event whose text matches `pattern`."
  @spec assert_logged(Regex.t() | String.t()) :: String.t()
  def assert_logged(pattern) do
    receive do
      {:log, text} -> if text =~ pattern, do: text, else: assert_logged(pattern)
    after
      5_000 -> flunk("nothing logged matching #{inspect(pattern)}")
    end
  end

  @doc false
  def log(%{msg: msg}, %{config: %{test: test}}) do
    text =
      case msg do
        {:string, chardata} -> IO.chardata_to_string(chardata)
        {:report, report} -> inspect(report)
        {format, args} -> format |> :io_lib.format(args) |> IO.chardata_to_string()
      end

    send(test, {:log, text})
  end
end
