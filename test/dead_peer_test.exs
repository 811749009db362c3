defmodule Crier.DeadPeerTest do
  @moduledoc """
  Peers that vanish without a FIN, for real: the client sits in a network namespace the test
  makes, joined to the server by a veth pair; taking the client's end of the link down drops
  every packet silently, as a pulled cable or a dead NAT entry would. TCP keepalive and
  `TCP_USER_TIMEOUT` must then find the peer dead and the owner hear `{:error, :timeout}`
  within the configured time.

  Needs CAP_NET_ADMIN (root in CI) and `ip` from iproute2; skipped with a message otherwise.
  """
  use ExUnit.Case, async: false

  alias Crier.Test.{FunHandler, RawClient}

  # Decided when this file compiles, at the start of the test run.
  probe = "crier_probe_#{System.os_time()}"

  netns_ok? =
    with path when is_binary(path) <- System.find_executable("ip"),
         {_, 0} <- System.cmd(path, ["netns", "add", probe], stderr_to_stdout: true) do
      System.cmd(path, ["netns", "del", probe], stderr_to_stdout: true)
      true
    else
      _ -> false
    end

  unless netns_ok? do
    @moduletag skip:
                 "needs `ip` (iproute2) and CAP_NET_ADMIN to make a network namespace; " <>
                   "run as root after `make deps`"
  end

  @moduletag :netns

  defp ip!(args) do
    {out, status} = System.cmd("ip", args, stderr_to_stdout: true)
    if status != 0, do: flunk("ip #{Enum.join(args, " ")} failed: #{out}")
    out
  end

  # A namespace with one end of a veth pair; the other end, in ours, is 10.213.n.1.
  # The namespace's number also names its interfaces and subnet; one that exists already
  # (another test run on this machine) is skipped, never taken over.
  setup do
    {n, ns} = new_namespace(rem(:erlang.phash2({System.pid(), self()}), 250) + 1, 250)
    {host_if, peer_if} = {"crdp#{n}a", "crdp#{n}b"}
    # A socket of the vanished client may keep the namespace alive for minutes after it is
    # deleted: delete the host's end of the link too, which takes the pair with it.
    on_exit(fn ->
      System.cmd("ip", ["link", "del", host_if], stderr_to_stdout: true)
      System.cmd("ip", ["netns", "del", ns], stderr_to_stdout: true)
    end)

    ip!(["link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", ns])
    ip!(["addr", "add", "10.213.#{n}.1/30", "dev", host_if])
    ip!(["link", "set", host_if, "up"])
    ip!(["-n", ns, "addr", "add", "10.213.#{n}.2/30", "dev", peer_if])
    ip!(["-n", ns, "link", "set", peer_if, "up"])
    %{ns: ns, peer_if: peer_if, server_ip: {10, 213, n, 1}}
  end

  defp new_namespace(_n, 0), do: flunk("no free network namespace number")

  defp new_namespace(n, tries) do
    ns = "crier_dp#{n}"

    case System.cmd("ip", ["netns", "add", ns], stderr_to_stdout: true) do
      {_, 0} -> {n, ns}
      _ -> new_namespace(rem(n, 250) + 1, tries - 1)
    end
  end

  defp serve(ctx, opts) do
    test = self()

    FunHandler.start_server(
      fn conn ->
        {:ok, conn} = Crier.sse(conn)
        send(test, :streaming)
        ref = conn.ref

        receive do
          {:crier, ^ref, {:error, reason}} ->
            send(test, {:told, reason, System.monotonic_time(:millisecond)})
        end
      end,
      [ip: ctx.server_ip] ++ opts
    )
  end

  defp connect_from_namespace(ctx, port) do
    {:ok, client} =
      :gen_tcp.connect(
        ctx.server_ip,
        port,
        [:binary, active: false, netns: "/var/run/netns/#{ctx.ns}"],
        5_000
      )

    :ok = RawClient.get(client, "/")
    client
  end

  defp vanish(ctx) do
    ip!(["-n", ctx.ns, "link", "set", ctx.peer_if, "down"])
    System.monotonic_time(:millisecond)
  end

  test "a streaming peer that vanishes is reported :timeout within tcp_user_timeout", ctx do
    {user_timeout, heartbeat} = {1_000, 200}

    {_name, port} =
      serve(ctx,
        tcp_user_timeout: user_timeout,
        heartbeat: heartbeat,
        tcp_keepalive: nil,
        send_timeout: 60_000
      )

    client = connect_from_namespace(ctx, port)
    assert_receive :streaming, 5_000
    # The link works: a heartbeat crosses it.
    assert {:ok, _} = RawClient.read_until(client, ":\n\n", 5_000)

    gone_at = vanish(ctx)
    # The next heartbeat goes unacknowledged; the kernel gives up tcp_user_timeout later
    # (checked at its retransmission timer, hence the margin).
    bound = heartbeat + user_timeout + 2_000
    assert_receive {:told, :timeout, told_at}, bound
    assert told_at > gone_at
    RawClient.reset(client)
  end

  test "an idle peer that vanishes is found by keepalive and reported :timeout", ctx do
    {keepalive, user_timeout} = {1_000, 2_000}

    {_name, port} =
      serve(ctx, tcp_keepalive: keepalive, tcp_user_timeout: user_timeout, heartbeat: nil)

    client = connect_from_namespace(ctx, port)
    assert_receive :streaming, 5_000
    assert {:ok, _} = RawClient.read_until(client, "\r\n\r\n", 5_000)

    gone_at = vanish(ctx)
    # Probes start after `keepalive` of silence; the kernel drops the connection once
    # `user_timeout` passed without an answer (tcp(7), TCP_USER_TIMEOUT with keepalive).
    bound = keepalive + user_timeout + 2_000
    assert_receive {:told, :timeout, told_at}, bound
    assert told_at > gone_at
    RawClient.reset(client)
  end
end
