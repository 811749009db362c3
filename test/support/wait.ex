defmodule Crier.Test.Wait do
  @moduledoc "Waits for a condition with a deadline, polling; never a bare sleep."

  @doc """
  Calls `fun` every `interval` ms until it returns a truthy value, which is returned, or
  `timeout` ms pass, which fails the test with `message`.
  """
  @spec until((() -> term()), timeout(), String.t(), pos_integer()) :: term()
  def until(fun, timeout \\ 5_000, message \\ "condition not met in time", interval \\ 10) do
    deadline = System.monotonic_time(:millisecond) + timeout
    loop(fun, deadline, message, interval)
  end

  defp loop(fun, deadline, message, interval) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      _ ->
        if System.monotonic_time(:millisecond) > deadline do
          ExUnit.Assertions.flunk(message)
        else
          Process.sleep(interval)
          loop(fun, deadline, message, interval)
        end
    end
  end
end
