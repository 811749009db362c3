defmodule Crier.DemoTest do
  @moduledoc """
  The demo, run as `make demo` runs it and checked with curl: `/` serves the page, `/events`
  streams the clock's ticks, other paths get 404, and when curl goes away the demo's handler
  logs the close with its reason.
  """
  use ExUnit.Case, async: true

  alias Crier.Test.DemoRunner

  @moduletag :demo

  setup do
    demo = DemoRunner.start()
    on_exit(fn -> DemoRunner.stop(demo) end)
    %{demo: demo}
  end

  test "/ serves the page", %{demo: demo} do
    {out, 0} = curl(["-si", demo.url])
    [head, body] = String.split(out, "\r\n\r\n", parts: 2)
    assert head =~ ~r{\AHTTP/1.1 200 OK\r\n}
    assert head =~ ~r{\r\ncontent-type: text/html; charset=utf-8\r\n}i
    assert body =~ "<title>Crier demo</title>"
    assert body =~ ~s{new EventSource("/events")}
  end

  test "other paths get 404", %{demo: demo} do
    {code, 0} = curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", demo.url <> "nowhere"])
    assert code == "404"
  end

  test "/events streams ticks, and the close is logged with its reason", %{demo: demo} do
    curl = System.find_executable("curl") || flunk("curl is not installed")

    {stream, pgid} =
      DemoRunner.spawn_program(curl, [
        "-sN",
        "-H",
        "accept: text/event-stream",
        demo.url <> "events"
      ])

    [ref] = DemoRunner.wait_line(demo, ~r{stream (\d+) opened by 127\.0\.0\.1:}, 10_000)

    assert DemoRunner.wait_line(stream, ~r{\A(retry: 2000)\z}, 10_000) == ["retry: 2000"]

    # Two ticks: the one a new subscriber triggers, then the clock's next.
    ticks =
      for _ <- 1..2 do
        DemoRunner.wait_line(stream, ~r{\Aevent: tick\z}, 10_000)
        DemoRunner.wait_line(stream, ~r/\Adata: (\{"time":"[^"]+","clients":\d+\})\z/, 10_000)
      end

    assert length(ticks) == 2

    DemoRunner.kill(stream, pgid, "KILL")
    assert DemoRunner.wait_line(demo, ~r{stream #{ref} closed: (\w+)}, 5_000) == ["closed"]
  end

  test "HTTPS=1 serves the demo over TLS: the page and its events over HTTP/2" do
    demo = DemoRunner.start([{~c"HTTPS", ~c"1"}])
    on_exit(fn -> DemoRunner.stop(demo) end)
    assert demo.url =~ ~r{\Ahttps://}
    # A self-signed certificate made at start: -k accepts it.
    {out, 0} = curl(["-sk", "--http2", "-w", "\n%{http_version}", demo.url])
    assert out =~ "<title>Crier demo</title>"
    assert String.ends_with?(out, "\n2")

    {out, _} =
      curl([
        "-skN",
        "--http2",
        "--max-time",
        "3",
        "-H",
        "accept: text/event-stream",
        demo.url <> "events"
      ])

    assert out =~ "event: tick"
  end

  defp curl(args) do
    System.cmd("curl", ["--max-time", "10" | args])
  end
end
