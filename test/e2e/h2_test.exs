defmodule Crier.E2E.H2Test do
  @moduledoc """
  HTTP/2 and HTTPS with real clients against a certificate made in the test: curl
  `--http2` and `--http1.1`, Node's built-in `http2` client (ten streams on one connection,
  one reset, then the connection dropped; a 103 Early Hints from `Crier.Conn.inform/3`
  before the response), the npm `eventsource` package over HTTPS, and
  headless Chromium opening ten `EventSource`s to one origin, all live at once, then closing
  one: that owner is told, the others are not.
  """
  use ExUnit.Case, async: true

  alias Crier.Test.{Cert, FunHandler}

  @moduletag :e2e
  @e2e_dir Path.expand(".", __DIR__)

  setup_all do
    cert = Cert.make!()
    on_exit(fn -> File.rm_rf!(cert.dir) end)
    %{cert: cert}
  end

  setup %{cert: cert} do
    test = self()

    {name, port} =
      FunHandler.start_server(&handle(&1, test), certfile: cert.certfile, keyfile: cert.keyfile)

    %{name: name, port: port}
  end

  # "/" is a page of ten EventSources; "/events?i=N" streams a tick every 100 ms and tells
  # the test when it opens and when its owner is told it closed.
  defp handle(%{path: "/"} = conn, _test) do
    Crier.Conn.send_resp(conn, 200, [{"content-type", "text/html"}], page())
  end

  defp handle(%{path: "/events"} = conn, test) do
    query = URI.decode_query(conn.query)
    i = query["i"]

    if query["hints"],
      do: :ok = Crier.Conn.inform(conn, 103, [{"link", "</app.css>; rel=preload"}])

    {:ok, conn} = Crier.Conn.send_chunked(conn, 200, [{"content-type", "text/event-stream"}])
    send(test, {:opened, i, conn.version})
    tick(conn, i, test)
  end

  defp tick(conn, i, test) do
    receive do
      {:crier, ref, {:error, reason}} when ref == conn.ref -> send(test, {:closed, i, reason})
    after
      100 ->
        Crier.Conn.chunk(conn, "data: #{i}\n\n")
        tick(conn, i, test)
    end
  end

  # Ten EventSources; when all are open and ticking, the page closes the fourth (i=3), waits
  # for one more tick on each of the others, then marks the body and closes them all, so
  # --dump-dom returns.
  defp page do
    """
    <!doctype html><html><body data-state="waiting"><script>
    const sources = [], live = new Set(), after = new Set();
    let closed = false;
    for (let i = 0; i < 10; i++) {
      const source = new EventSource(`/events?i=${i}`);
      source.onmessage = () => {
        if (!closed) {
          live.add(i);
          if (live.size === 10) { closed = true; sources[3].close(); }
        } else if (i !== 3) {
          after.add(i);
          if (after.size === 9) {
            document.body.dataset.state = "done";
            sources.forEach((s) => s.close());
          }
        }
      };
      sources.push(source);
    }
    </script></body></html>
    """
  end

  defp curl(port, cert, flag) do
    System.cmd("curl", [
      "-sS",
      flag,
      "--max-time",
      "10",
      "--cacert",
      cert.certfile,
      "--resolve",
      "localhost:#{port}:127.0.0.1",
      "-w",
      "%{http_version}",
      "https://localhost:#{port}/"
    ])
  end

  # Node's http2 client (h2_client.mjs) as a port, one line of its output per message.
  defp h2_client(port, args) do
    node = System.find_executable("node") || flunk("node is not installed")

    Port.open({:spawn_executable, node}, [
      :binary,
      {:line, 1024},
      {:cd, @e2e_dir},
      args: ["h2_client.mjs", "https://localhost:#{port}" | args]
    ])
  end

  test "curl over HTTPS: --http2 gets HTTP/2, --http1.1 gets HTTP/1.1", %{port: port, cert: cert} do
    {out, 0} = curl(port, cert, "--http2")
    assert out =~ "new EventSource" and String.ends_with?(out, "2")
    {out, 0} = curl(port, cert, "--http1.1")
    assert out =~ "new EventSource" and String.ends_with?(out, "1.1")
  end

  test "Node's http2 client: ten streams on one connection, one reset, then the socket dropped",
       %{port: port, name: name} do
    client = h2_client(port, ["10"])

    for _ <- 1..10, do: assert_receive({:opened, _, :"HTTP/2"})
    for _ <- 1..10, do: assert_receive({^client, {:data, {:eol, "event " <> _}}})
    assert Crier.stats(name).connections == 1
    Port.command(client, "close 3\n")
    assert_receive {:closed, "3", :closed}
    refute_receive {:closed, _, _}, 300
    Port.command(client, "quit\n")
    closed = for _ <- 1..9, do: assert_receive({:closed, i, :closed}) && i
    assert Enum.sort(closed) == Enum.map(Enum.reject(0..9, &(&1 == 3)), &to_string/1)
  end

  test "Node's http2 client gets inform's 103 Early Hints ahead of the response", %{port: port} do
    client = h2_client(port, ["1", "&hints=1"])

    assert_receive {:opened, "0", :"HTTP/2"}
    assert_receive {^client, {:data, {:eol, "info 0 103 </app.css>; rel=preload"}}}
    assert_receive {^client, {:data, {:eol, "open 0 200"}}}
    assert_receive {^client, {:data, {:eol, "event 0 0"}}}
    Port.command(client, "quit\n")
    assert_receive {:closed, "0", :closed}
  end

  test "the npm eventsource package reads events over HTTPS", %{port: port} do
    node = System.find_executable("node") || flunk("node is not installed")

    {out, 0} =
      System.cmd(node, ["eventsource_client.mjs", "https://localhost:#{port}/events?i=x", "2"],
        cd: @e2e_dir,
        env: [{"NODE_TLS_REJECT_UNAUTHORIZED", "0"}],
        stderr_to_stdout: true
      )

    assert out =~ "open\n"
    assert out =~ "done"
    assert_receive {:opened, "x", :"HTTP/1.1"}
  end

  test "Chromium: ten EventSources on one HTTP/2 connection, one closed, that owner alone told",
       %{port: port, name: name} do
    chromium = System.find_executable("chromium") || flunk("chromium is not installed")
    profile = Path.join(System.tmp_dir!(), "crier-h2-#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm_rf(profile) end)
    flags = ~w(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
         --disable-background-networking --disable-component-update --disable-sync
         --ignore-certificate-errors) ++ ["--user-data-dir=#{profile}"]

    browser =
      Task.async(fn ->
        System.cmd(
          "sh",
          ["-c", ~s(exec timeout 60 "$@" 2>/dev/null), "sh" | [chromium | flags]] ++
            ["--virtual-time-budget=30000", "--dump-dom", "https://127.0.0.1:#{port}/"]
        )
      end)

    opened = for _ <- 1..10, do: assert_receive({:opened, i, :"HTTP/2"}, 30_000) && i
    assert Enum.sort(opened) == Enum.map(0..9, &to_string/1)
    # Past six: HTTP/1.1 would have queued four of them. One connection carries all ten.
    assert Crier.stats(name).connections == 1
    assert_receive {:closed, "3", :closed}, 30_000
    # The others tick on: none was told (they close only when the page is done).
    refute_received {:closed, _, _}
    {dom, 0} = Task.await(browser, 65_000)
    # The nine others each ticked after the close (the page saw it), and only then closed.
    assert dom =~ ~s(data-state="done")
  end
end
