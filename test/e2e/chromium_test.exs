defmodule Crier.E2E.ChromiumTest do
  @moduledoc """
  A real browser reads the demo: headless Chromium (Debian's `chromium`) opens the demo page,
  whose `EventSource` gets the clock's ticks into the page; and when the browser is killed
  the demo's handler is told at once and logs the close with its reason.
  """
  use ExUnit.Case, async: true

  alias Crier.Test.DemoRunner

  @moduletag :e2e

  setup do
    chromium = System.find_executable("chromium") || flunk("chromium is not installed")
    profile = Path.join(System.tmp_dir!(), "crier-chromium-#{System.unique_integer([:positive])}")
    demo = DemoRunner.start()

    on_exit(fn ->
      DemoRunner.stop(demo)
      File.rm_rf(profile)
    end)

    %{demo: demo, chromium: chromium, profile: profile}
  end

  # The flags that make Chromium run headless as root in a container (see DESIGN.md).
  defp flags(profile) do
    ~w(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync) ++
      ["--user-data-dir=#{profile}"]
  end

  test "events arrive in the page, and the page's close is logged", %{
    demo: demo,
    chromium: chromium,
    profile: profile
  } do
    # The page closes its EventSource after 3 events (?events=3); only then can --dump-dom
    # return, with the page as the events left it.
    # Chromium's stderr (D-Bus complaints in a container) goes nowhere; the DOM to stdout.
    {dom, 0} =
      System.cmd(
        "sh",
        ["-c", ~s(exec timeout 60 "$@" 2>/dev/null), "sh", chromium | flags(profile)] ++
          ["--virtual-time-budget=30000", "--dump-dom", demo.url <> "?events=3"]
      )

    assert dom =~ ~s(<body data-events="3">)
    assert dom =~ ~s(<p id="status">closed after 3 events</p>)
    assert dom =~ ~r{<p id="clock">\d\d:\d\d:\d\d</p>}
    assert dom =~ ~r{<strong id="clients">\d+</strong>}

    [ref] = DemoRunner.wait_line(demo, ~r{stream (\d+) opened by 127\.0\.0\.1:}, 10_000)
    assert DemoRunner.wait_line(demo, ~r{stream #{ref} closed: (\w+)}, 10_000) == ["closed"]
  end

  test "killing the browser makes the server report the close", %{
    demo: demo,
    chromium: chromium,
    profile: profile
  } do
    {browser, pgid} = DemoRunner.spawn_program(chromium, flags(profile) ++ [demo.url])
    [ref] = DemoRunner.wait_line(demo, ~r{stream (\d+) opened by 127\.0\.0\.1:}, 30_000)
    # A tick or two later the page is surely live; no write is needed to see the close.
    DemoRunner.kill(browser, pgid, "KILL")
    assert DemoRunner.wait_line(demo, ~r{stream #{ref} closed: (\w+)}, 5_000) == ["closed"]
  end
end
