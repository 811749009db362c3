defmodule Crier.HTTP.CurlTest do
  @moduledoc """
  curl as a real client: keep-alive across several URLs, uploads by Content-Length and
  chunked, HEAD, Expect: 100-continue, HTTP/1.0 and Connection: close. Each test checks what
  curl got and, through the handler's reports, what the server saw (one connection or many).
  """
  use Crier.Test.HttpCase, async: true

  @moduletag :curl

  setup %{port: port} do
    dir = Path.join(System.tmp_dir!(), "crier_curl_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    %{base: "http://127.0.0.1:#{port}", dir: dir}
  end

  test "several URLs with --http1.1 share one kept-alive connection, answered in order",
       %{base: base} do
    urls = for i <- 1..5, do: "#{base}/u#{i}"
    {out, 0} = curl(["--http1.1" | urls])
    assert out == Enum.map_join(1..5, "", &"GET /u#{&1}")
    peers = for _ <- 1..5, do: assert_receive({:handled, _, conn}, 5_000) && conn.peer
    assert length(Enum.uniq(peers)) == 1, "curl opened #{length(Enum.uniq(peers))} connections"
  end

  test "an upload by Content-Length arrives whole", context do
    assert_echoed_upload(context, 3_000_000, [], {"content-length", "3000000"})
  end

  test "a chunked upload arrives whole", context do
    headers = ["-H", "Transfer-Encoding: chunked"]
    assert_echoed_upload(context, 1_500_000, headers, {"transfer-encoding", "chunked"})
  end

  test "curl waits for 100 Continue and then sends its body", %{base: base, dir: dir} do
    file = write_file(dir, 200_000)

    # A long --expect100-timeout: the body goes only after the server's 100.
    received = Path.join(dir, "received")

    {trace, 0} =
      curl([
        "--http1.1",
        "-v",
        "--expect100-timeout",
        "30",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        "@" <> file,
        "-o",
        received,
        base <> "/echo"
      ])

    assert trace =~ "< HTTP/1.1 100 Continue"
    assert File.read!(received) == File.read!(file)
  end

  test "HEAD gets the head alone and keeps the connection", %{base: base} do
    {out, 0} = curl(["--http1.1", "-I", base <> "/a", base <> "/b"])
    assert [_, _] = Regex.scan(~r{HTTP/1.1 200 OK}, out)
    assert out =~ ~r/content-length: 7\r\n/i
    refute out =~ "HEAD /a"
    peers = for _ <- 1..2, do: assert_receive({:handled, _, conn}, 5_000) && conn.peer
    assert length(Enum.uniq(peers)) == 1
  end

  test "a chunked stream reaches curl whole", %{base: base} do
    {out, 0} = curl(["--http1.1", "-i", base <> "/stream"])
    assert out =~ ~r/transfer-encoding: chunked\r\n/i
    assert String.ends_with?(out, "\r\n\r\nab")
  end

  test "HTTP/1.0 gets a close-delimited stream", %{base: base} do
    {out, 0} = curl(["--http1.0", "-i", base <> "/stream"])
    assert "HTTP/1.0 200 OK\r\n" <> _ = out
    refute out =~ ~r/transfer-encoding/i
    assert String.ends_with?(out, "\r\n\r\nab")
  end

  test "Connection: close makes curl open a new connection for the next URL", %{base: base} do
    {out, 0} = curl(["--http1.1", "-H", "Connection: close", base <> "/a", base <> "/b"])
    assert out == "GET /aGET /b"
    peers = for _ <- 1..2, do: assert_receive({:handled, _, conn}, 5_000) && conn.peer
    assert length(Enum.uniq(peers)) == 2
  end

  test "204 and 304 end without a body and the connection goes on", %{base: base} do
    {out, 0} =
      curl([
        "--http1.1",
        "-s",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\n",
        base <> "/status/204",
        base <> "/status/304",
        base <> "/status/200"
      ])

    assert out == "204 1\n304 0\n200 0\n"
  end

  defp curl(args) do
    System.cmd("curl", ["-sS", "--max-time", "20" | args], stderr_to_stdout: true)
  end

  # Uploads `size` random bytes to /echo (no Expect: 100-continue) with the curl arguments
  # `args`: curl must get them back whole, and the server must have seen the request field
  # `name` with `value`.
  defp assert_echoed_upload(%{base: base, dir: dir}, size, args, {name, value}) do
    file = write_file(dir, size)
    upload = ["-H", "Expect:", "--data-binary", "@" <> file, base <> "/echo"]
    {out, 0} = curl(["--http1.1" | args] ++ upload)
    assert out == File.read!(file)
    assert_receive {:handled, _, conn}, 5_000
    assert Crier.Conn.get_req_header(conn, name) == [value]
  end

  defp write_file(dir, size) do
    path = Path.join(dir, "upload-#{size}")
    File.write!(path, :crypto.strong_rand_bytes(size))
    path
  end
end
