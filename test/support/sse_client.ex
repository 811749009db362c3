defmodule Crier.Test.SseClient do
  @moduledoc """
  A small `EventSource` for tests, over `:gen_tcp`: sends a GET, reads the head, de-chunks
  the body and parses it as an event stream (WHATWG HTML 9.2.6: CR, LF and CRLF line ends,
  one leading space stripped, `id` with NUL ignored, dispatch on a blank line). Every read
  has a deadline.

  The spec-exact yardstick is the Rust parser in `native/crier_core/tests/support/`; this one
  follows the same rules so Elixir tests read real streams the way a browser would.
  """

  alias Crier.Test.RawClient

  defstruct [
    :socket,
    :status,
    headers: [],
    raw: "",
    text: "",
    chunked: true,
    ended: false,
    data: nil,
    type: "",
    id_buffer: "",
    last_event_id: "",
    retry: nil,
    events: []
  ]

  @type event :: %{type: String.t(), data: String.t(), id: String.t()}
  @type t :: %__MODULE__{}

  @doc """
  Opens `path` on 127.0.0.1:`port` and reads the response head. Options: `:headers`,
  `:last_event_id`, `:recbuf` (a small receive buffer, for a client meant to fall behind),
  `:version` (`"HTTP/1.1"` or `"HTTP/1.0"`).
  """
  @spec connect(:inet.port_number(), String.t(), keyword()) :: t()
  def connect(port, path, opts \\ []) do
    extra = if opts[:recbuf], do: [recbuf: opts[:recbuf]], else: []

    {:ok, socket} =
      :gen_tcp.connect(
        {127, 0, 0, 1},
        port,
        [:binary, active: false, packet: :raw] ++ extra,
        5_000
      )

    headers =
      Keyword.get(opts, :headers, []) ++
        if(id = opts[:last_event_id], do: [{"last-event-id", id}], else: [])

    version = Keyword.get(opts, :version, "HTTP/1.1")
    lines = Enum.map_join(headers, "", fn {k, v} -> "#{k}: #{v}\r\n" end)

    :ok =
      :gen_tcp.send(
        socket,
        "GET #{path} #{version}\r\nhost: localhost\r\naccept: text/event-stream\r\n#{lines}\r\n"
      )

    read_head(%__MODULE__{socket: socket}, deadline(5_000))
  end

  @doc "Closes the connection."
  @spec close(t()) :: :ok
  def close(%__MODULE__{socket: socket}), do: :gen_tcp.close(socket)

  @doc "The first value of response header `name` (lowercase)."
  @spec header(t(), String.t()) :: String.t() | nil
  def header(client, name) do
    Enum.find_value(client.headers, fn {k, v} -> if k == name, do: v end)
  end

  @doc """
  The next dispatched event: `{:ok, event, client}`, `{:closed, client}` once the response
  ended or the socket closed, or `{:timeout, client}`.
  """
  @spec next_event(t(), non_neg_integer()) :: {:ok, event(), t()} | {:closed | :timeout, t()}
  def next_event(client, timeout \\ 5_000), do: next_event_until(client, deadline(timeout))

  @doc "Reads `n` events or fails the test."
  @spec take(t(), non_neg_integer(), timeout()) :: {[event()], t()}
  def take(client, n, timeout \\ 5_000) do
    Enum.map_reduce(1..n//1, client, fn _, client ->
      case next_event(client, timeout) do
        {:ok, event, client} ->
          {event, client}

        {other, client} ->
          raise "expected an event, got #{other}; last id #{client.last_event_id}"
      end
    end)
  end

  @doc "Waits until the server ends the response or closes; returns the events on the way."
  @spec read_to_end(t(), timeout()) :: {:closed | :timeout, [event()]}
  def read_to_end(client, timeout \\ 5_000), do: read_to_end(client, deadline(timeout), [])

  defp read_to_end(client, deadline, acc) do
    case next_event_until(client, deadline) do
      {:ok, event, client} -> read_to_end(client, deadline, [event | acc])
      {result, _client} -> {result, Enum.reverse(acc)}
    end
  end

  defp next_event_until(%{events: [event | rest]} = client, _deadline),
    do: {:ok, event, %{client | events: rest}}

  defp next_event_until(%{ended: true} = client, _deadline), do: {:closed, client}

  defp next_event_until(client, deadline) do
    case recv(client, deadline) do
      {:ok, bytes} ->
        client |> feed_raw(bytes) |> next_event_until(deadline)

      :timeout ->
        {:timeout, client}

      :closed ->
        {:closed, %{client | ended: true, data: nil, type: ""}}
    end
  end

  defp recv(client, deadline) do
    left = max(deadline - System.monotonic_time(:millisecond), 0)

    case :gen_tcp.recv(client.socket, 0, left) do
      {:ok, bytes} -> {:ok, bytes}
      {:error, :timeout} -> :timeout
      {:error, _} -> :closed
    end
  end

  defp read_head(client, deadline) do
    case :binary.split(client.raw, "\r\n\r\n") do
      [head, rest] ->
        {status, headers, ""} = RawClient.parse_response(head <> "\r\n\r\n")
        chunked = {"transfer-encoding", "chunked"} in headers

        %{client | status: status, headers: headers, chunked: chunked, raw: ""}
        |> feed_raw(rest)

      [_] ->
        case recv(client, deadline) do
          {:ok, bytes} -> read_head(%{client | raw: client.raw <> bytes}, deadline)
          other -> raise "no response head: #{inspect(other)} after #{inspect(client.raw)}"
        end
    end
  end

  defp feed_raw(%{chunked: false} = client, bytes), do: feed_text(client, bytes)

  defp feed_raw(client, bytes), do: dechunk(%{client | raw: client.raw <> bytes})

  defp dechunk(client) do
    with [size_hex, rest] <- :binary.split(client.raw, "\r\n"),
         {size, ""} <- Integer.parse(size_hex, 16) do
      cond do
        size == 0 ->
          %{client | ended: true, raw: ""}

        byte_size(rest) >= size + 2 ->
          <<data::binary-size(size), "\r\n", more::binary>> = rest
          %{client | raw: more} |> feed_text(data) |> dechunk()

        true ->
          client
      end
    else
      _ -> client
    end
  end

  # Complete lines are interpreted; a CR at the very end waits, it may be half of a CRLF.
  defp feed_text(client, bytes) do
    text = client.text <> bytes

    case Regex.run(~r/\A(.*?)(\r\n|\n|\r)(.*)\z/s, text) do
      [_, _line, "\r", ""] ->
        %{client | text: text}

      [_, line, _end, rest] ->
        %{client | text: ""} |> interpret(line) |> feed_text(rest)

      nil ->
        %{client | text: text}
    end
  end

  defp interpret(client, ""), do: dispatch(client)
  defp interpret(client, ":" <> _comment), do: client

  defp interpret(client, line) do
    case :binary.split(line, ":") do
      [field, " " <> value] -> field(client, field, value)
      [field, value] -> field(client, field, value)
      [field] -> field(client, field, "")
    end
  end

  defp field(client, "event", value), do: %{client | type: value}
  defp field(client, "data", value), do: %{client | data: [client.data || [], value, "\n"]}

  defp field(client, "id", value) do
    if String.contains?(value, <<0>>), do: client, else: %{client | id_buffer: value}
  end

  defp field(client, "retry", value) do
    if value =~ ~r/\A[0-9]+\z/, do: %{client | retry: String.to_integer(value)}, else: client
  end

  defp field(client, _other, _value), do: client

  defp dispatch(client) do
    client = %{client | last_event_id: client.id_buffer}

    case client.data do
      nil ->
        %{client | type: ""}

      data ->
        data = data |> IO.iodata_to_binary() |> String.replace_suffix("\n", "")
        type = if client.type == "", do: "message", else: client.type
        event = %{type: type, data: data, id: client.last_event_id}
        %{client | events: client.events ++ [event], data: nil, type: ""}
    end
  end

  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms
end
