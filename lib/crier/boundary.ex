defmodule Crier.Boundary do
  @moduledoc false
  # What crosses into Rust, checked and routed on the Elixir side: arguments the docs refuse
  # raise `ArgumentError` here (improper lists included, which the NIFs also refuse), and
  # arguments large enough that copying or scanning them could hold a normal scheduler for
  # a millisecond go to the NIFs' dirty-scheduler twins. The checks are plain Elixir, which
  # the VM preempts, so they cost no scheduler time of their own.

  alias Crier.{Errors, Native}

  # Measured on the 2-core CI machine (release build, fastest of 50 calls): encoding a
  # 256 KiB event takes 0.8 ms, too close to the bound; 64 KiB takes 0.19 ms. Writing a head
  # of 1,000 headers takes 0.1 ms, subscribing to 1,000 topics 0.07 ms.
  @dirty_bytes 64 * 1024
  @dirty_items 1_000

  @max_topic_bytes 65_536

  @doc false
  # Calls NIF `name` with `args`, through its dirty-scheduler twin when `dirty?`.
  @spec call(boolean(), atom(), list()) :: term()
  def call(true = _dirty?, name, args), do: Native.dirty(name, args)
  def call(false, name, args), do: apply(Native, name, args)

  @doc false
  @spec large_iodata?(term()) :: boolean()
  def large_iodata?(data) when is_binary(data), do: byte_size(data) > @dirty_bytes

  def large_iodata?(data) when is_list(data) do
    :erlang.iolist_size(data) > @dirty_bytes
  rescue
    # Not iodata: the NIF refuses it with a message that says so.
    ArgumentError -> false
  end

  def large_iodata?(_data), do: false

  @doc false
  # Whether the text fields of `event` are large (anything but a map is the NIF's to refuse).
  @spec large_event?(term()) :: boolean()
  def large_event?(event) when is_map(event) do
    bytes =
      for key <- [:id, :event, :data, :comment],
          value = Map.get(event, key),
          is_binary(value),
          reduce: 0,
          do: (acc -> acc + byte_size(value))

    bytes > @dirty_bytes
  end

  def large_event?(_event), do: false

  @doc false
  # Checks a header list (a proper list of `{name, value}` binaries) and says whether it is
  # large enough for a dirty scheduler.
  @spec headers!(term()) :: boolean()
  def headers!(headers), do: headers!(headers, headers, 0, 0)

  defp headers!([], _all, count, bytes), do: count > @dirty_items or bytes > @dirty_bytes

  defp headers!([{name, value} | rest], all, count, bytes)
       when is_binary(name) and is_binary(value),
       do: headers!(rest, all, count + 1, bytes + byte_size(name) + byte_size(value))

  defp headers!(_other, all, _count, _bytes) do
    raise ArgumentError,
          "headers must be a list of {name, value} string tuples (a proper list), got: " <>
            inspect(all, limit: 10)
  end

  @doc false
  # Checks one topic name.
  @spec topic!(term()) :: String.t()
  def topic!(topic) when is_binary(topic) and byte_size(topic) <= @max_topic_bytes, do: topic

  def topic!(topic) when is_binary(topic),
    do: raise(ArgumentError, "a topic must be at most #{@max_topic_bytes} bytes")

  def topic!(topic),
    do: raise(ArgumentError, "a topic must be a string, got: #{inspect(topic, limit: 10)}")

  @doc false
  # Checks a list of topics and says whether it is large enough for a dirty scheduler.
  @spec topics!(term()) :: boolean()
  def topics!(topics), do: topics!(topics, topics, 0)

  defp topics!([], _all, count), do: count > @dirty_items

  defp topics!([topic | rest], all, count) do
    topic!(topic)
    topics!(rest, all, count + 1)
  end

  defp topics!(_other, all, _count) do
    raise ArgumentError,
          "topics must be a string or a proper list of strings, got: " <> inspect(all, limit: 10)
  end

  @doc false
  # Broadcasts on a server's resource, on a dirty scheduler for a large event.
  @spec broadcast!(reference(), term(), term()) :: :ok
  def broadcast!(resource, topic, event) do
    topic!(topic)

    large_event?(event)
    |> call(:server_broadcast, [resource, topic, event])
    |> Errors.unwrap!()
  end
end
