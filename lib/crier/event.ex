defmodule Crier.Event do
  @moduledoc """
  One Server-Sent Event. Every field is optional.

    * `:id` - sets the client's last event ID (sent back as `Last-Event-ID` on reconnect).
      Must not contain CR, LF or NUL.
    * `:event` - the event type a client listens for with `addEventListener`. Must not
      contain CR or LF.
    * `:data` - the payload; CRLF, CR and LF split it into several `data:` lines, which the
      client joins back with LF.
    * `:retry` - the client's reconnection delay, in milliseconds.
    * `:comment` - a comment line, ignored by clients.

  Encoding is done in Rust by the one encoder every path uses (single streams, broadcasts,
  replay), per the WHATWG event-stream format.

      iex> Crier.Event.encode(%Crier.Event{id: "7", event: "tick", data: "a\\nb"})
      "id: 7\\nevent: tick\\ndata: a\\ndata: b\\n\\n"
  """

  defstruct [:id, :event, :data, :retry, :comment]

  @type t :: %__MODULE__{
          id: String.t() | nil,
          event: String.t() | nil,
          data: String.t() | nil,
          retry: non_neg_integer() | nil,
          comment: String.t() | nil
        }

  @doc """
  Encodes `event` to its wire bytes.

  Raises `ArgumentError` when a field would break the stream (a line break in `:id` or
  `:event`, NUL in `:id`, a negative `:retry`, invalid UTF-8).
  """
  @spec encode(t() | map()) :: binary()
  def encode(event) do
    event
    |> Crier.Boundary.large_event?()
    |> Crier.Boundary.call(:encode_event, [event])
    |> Crier.Errors.unwrap!()
  end
end
