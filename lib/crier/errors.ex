defmodule Crier.Errors do
  @moduledoc false
  # NIFs report a caller's mistake as `{:error, {:argument, message}}`; the public API raises
  # it as `ArgumentError`, so the message says exactly what was wrong.

  @doc false
  def unwrap!({:error, {:argument, message}}), do: raise(ArgumentError, message)
  def unwrap!(other), do: other
end
