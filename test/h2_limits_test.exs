defmodule Crier.H2LimitsTest do
  @moduledoc """
  The `:h2_*` limits reach the core from the options, seen by a raw HTTP/2 client over
  `:ssl` (ALPN `h2`): twenty PINGs are nothing under the default budget, and past
  `h2_max_control_frames_per_second: 5` they end the connection with GOAWAY
  ENHANCE_YOUR_CALM; `nil` lifts the limit.
  """
  use ExUnit.Case, async: true

  alias Crier.Test.{Cert, FunHandler}

  @settings 0x4
  @ping 0x6
  @goaway 0x7
  @ack 0x1
  @enhance_your_calm 0xB

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ssl)
    cert = Cert.make!()
    on_exit(fn -> File.rm_rf!(cert.dir) end)
    %{cert: cert}
  end

  defp start(cert, opts) do
    handler = fn conn -> Crier.Conn.send_resp(conn, 204, [], "") end

    {_name, port} =
      FunHandler.start_server(handler, [certfile: cert.certfile, keyfile: cert.keyfile] ++ opts)

    port
  end

  defp frame(type, flags, payload),
    do: <<byte_size(payload)::24, type::8, flags::8, 0::32, payload::binary>>

  # Connects, sends the preface, an empty SETTINGS and `pings` PINGs at once.
  defp flood(port, pings) do
    {:ok, socket} =
      :ssl.connect(
        ~c"localhost",
        port,
        [alpn_advertised_protocols: ["h2"], verify: :verify_none, active: false, mode: :binary],
        5_000
      )

    {:ok, "h2"} = :ssl.negotiated_protocol(socket)
    pings = for _ <- 1..pings, into: <<>>, do: frame(@ping, 0, "crier!!!")
    :ok = :ssl.send(socket, ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", frame(@settings, 0, ""), pings])
    socket
  end

  # Reads frames until `count` PING acks or a GOAWAY: `{:acks, n}` or `{:goaway, code}`.
  defp answers(socket, count, acks \\ 0, buffer \\ <<>>) do
    case buffer do
      <<len::24, type::8, flags::8, _::32, payload::binary-size(len), rest::binary>> ->
        cond do
          type == @goaway ->
            <<_last::32, code::32, _::binary>> = payload
            {:goaway, code}

          type == @ping and Bitwise.band(flags, @ack) != 0 and acks + 1 == count ->
            {:acks, count}

          type == @ping and Bitwise.band(flags, @ack) != 0 ->
            answers(socket, count, acks + 1, rest)

          true ->
            answers(socket, count, acks, rest)
        end

      _ ->
        {:ok, more} = :ssl.recv(socket, 0, 5_000)
        answers(socket, count, acks, buffer <> more)
    end
  end

  test "twenty PINGs at once are answered under the default budget", %{cert: cert} do
    socket = flood(start(cert, []), 20)
    assert answers(socket, 20) == {:acks, 20}
    :ssl.close(socket)
  end

  test "past h2_max_control_frames_per_second the connection gets GOAWAY ENHANCE_YOUR_CALM",
       %{cert: cert} do
    socket = flood(start(cert, h2_max_control_frames_per_second: 5), 20)
    assert answers(socket, 20) == {:goaway, @enhance_your_calm}
    :ssl.close(socket)
  end

  test "nil lifts the limit", %{cert: cert} do
    socket = flood(start(cert, h2_max_control_frames_per_second: nil), 500)
    assert answers(socket, 500) == {:acks, 500}
    :ssl.close(socket)
  end
end
