%% Yaws target for the Crier benchmark: Debian's Yaws 2.1.1 serving SSE through yaws_sse,
%% embedded, speaking the benchmark's endpoint contract (bench/README.md).
%%
%% Each stream is a yaws worker process (waiting in wait_for_streamcontent_pid) plus our
%% stream process, which yaws makes the socket's controlling process. The stream process
%% sets {active, once} so it sees the client leave while idle (without that, yaws only
%% notices on the next write). A publish sends one Erlang message per subscriber per event;
%% the subscriber writes it with yaws_sse:send_events/2. Yaws streams are close-delimited.
%%
%% Start: erl -noshell -pa <yaws ebin> -pa <this beam> -s crier_bench_yaws start <port> <logdir>
-module(crier_bench_yaws).
-include_lib("yaws/include/yaws_api.hrl").

-export([start/1, out/1]).

start([PortA, LogDirA]) ->
    Port = list_to_integer(atom_to_list(PortA)),
    LogDir = atom_to_list(LogDirA),
    Self = self(),
    %% The tables need an owner that outlives this start function.
    spawn(fun() ->
                  ets:new(bench_subs, [set, public, named_table, {write_concurrency, true}]),
                  ets:new(bench_closes, [duplicate_bag, public, named_table,
                                         {write_concurrency, true}]),
                  Self ! tables,
                  receive stop -> ok end
          end),
    receive tables -> ok end,
    persistent_term:put(bench_counters, counters:new(5, [write_concurrency])),
    ok = filelib:ensure_dir(filename:join(LogDir, "x")),
    GL = [{logdir, LogDir}, {max_connections, nolimit}],
    SL = [{port, Port}, {listen, {127, 0, 0, 1}}, {servername, "bench"},
          {access_log, false}, {appmods, [{"/", ?MODULE}]}],
    ok = yaws:start_embedded(LogDir, SL, GL, "crierbench"),
    io:format("listening on 127.0.0.1:~b~n", [Port]),
    MaxSecs = case os:getenv("BENCH_MAX_SECS") of
                  false -> 3600;
                  S -> list_to_integer(S)
              end,
    timer:apply_after(MaxSecs * 1000, erlang, halt, [0]),
    ok.

cnt() -> persistent_term:get(bench_counters).
%% counters: 1 open, 2 subscribers, 3 told, 4 published

out(A) ->
    Req = A#arg.req,
    {abs_path, Target} = Req#http_request.path,
    Path = hd(string:split(Target, "?")),
    Q = yaws_api:parse_query(A),
    route(Req#http_request.method, Path, Q, A).

route('GET', "/sse", Q, A) -> stream(A, qid(Q), false);
route('GET', "/sub", Q, A) -> stream(A, qid(Q), true);
route('POST', "/publish", Q, _A) ->
    N = list_to_integer(proplists:get_value("n", Q, "1")),
    Interval = list_to_integer(proplists:get_value("interval_us", Q, "5000")),
    publish(N, proplists:get_value("mode", Q, "b2b"), Interval),
    {content, "application/json", io_lib:format("{\"published\":~b}~n", [N])};
route('GET', "/stats", _Q, _A) ->
    C = cnt(),
    {content, "application/json",
     io_lib:format("{\"open\":~b,\"subscribers\":~b,\"closed_told\":~b,\"overflow\":0,"
                   "\"processes\":~b}~n",
                   [counters:get(C, 1), counters:get(C, 2), counters:get(C, 3),
                    erlang:system_info(process_count)])};
route('GET', "/closes", _Q, _A) ->
    Body = ets:foldl(fun({Id, T}, Acc) -> [Id, " ", integer_to_list(T), "\n" | Acc] end,
                     [], bench_closes),
    {content, "text/plain", Body};
route('POST', "/reset", _Q, _A) ->
    ets:delete_all_objects(bench_closes),
    counters:put(cnt(), 3, 0),
    {content, "application/json", "{}\n"};
route(_, _, _, _) ->
    [{status, 404}, {content, "text/plain", "not found\n"}].

qid(Q) -> proplists:get_value("id", Q, "").

stream(A, Id, Sub) ->
    Sock = A#arg.clisock,
    Pid = spawn(fun() -> stream_init(Sock, Id, Sub) end),
    yaws_sse:headers(Pid).

stream_init(Sock, Id, Sub) ->
    receive
        {ok, YawsPid} ->
            C = cnt(),
            counters:add(C, 1, 1),
            case Sub of
                true -> ets:insert(bench_subs, {self()}), counters:add(C, 2, 1);
                false -> ok
            end,
            ok = inet:setopts(Sock, [{active, once}]),
            loop(Sock, YawsPid, Id, Sub);
        {discard, _} ->
            ok
    end.

loop(Sock, YawsPid, Id, Sub) ->
    receive
        {ev, Data} ->
            case yaws_sse:send_events(Sock, Data) of
                ok -> loop(Sock, YawsPid, Id, Sub);
                _ -> gone(Sock, YawsPid, Id, Sub, false)
            end;
        {tcp, Sock, _} ->
            inet:setopts(Sock, [{active, once}]),
            loop(Sock, YawsPid, Id, Sub);
        {tcp_closed, Sock} ->
            gone(Sock, YawsPid, Id, Sub, true);
        {tcp_error, Sock, _} ->
            gone(Sock, YawsPid, Id, Sub, true)
    end.

gone(Sock, YawsPid, Id, Sub, Told) ->
    T = os:system_time(nanosecond),
    C = cnt(),
    case Told andalso not Sub of
        true when Id =:= "" -> counters:add(C, 3, 1);
        true -> ets:insert(bench_closes, {Id, T}), counters:add(C, 3, 1);
        false -> ok
    end,
    case Sub of
        true -> ets:delete(bench_subs, self()), counters:sub(C, 2, 1);
        false -> ok
    end,
    counters:sub(C, 1, 1),
    yaws_api:stream_process_end(Sock, YawsPid).

%% One event's data lines; yaws_sse:send_events/2 adds the blank line that ends it.
data(Seq) ->
    yaws_sse:data([integer_to_list(Seq), " ", integer_to_list(os:system_time(nanosecond))]).

publish(N, Mode, IntervalUs) ->
    Base = counters:get(cnt(), 4),
    counters:add(cnt(), 4, N),
    case Mode of
        "burst" ->
            %% All events in one message: each needs its own blank line but the last,
            %% whose blank line send_events/2 adds.
            Evs = [[data(Base + K), "\n"] || K <- lists:seq(0, N - 2)] ++ [data(Base + N - 1)],
            fanout(iolist_to_binary(Evs));
        "paced" ->
            T0 = erlang:monotonic_time(microsecond),
            [begin wait_until(T0 + K * IntervalUs), fanout(iolist_to_binary(data(Base + K))) end
             || K <- lists:seq(0, N - 1)];
        _ ->
            [fanout(iolist_to_binary(data(Base + K))) || K <- lists:seq(0, N - 1)]
    end,
    ok.

wait_until(T) ->
    Left = T - erlang:monotonic_time(microsecond),
    if Left > 1000 -> timer:sleep(Left div 1000);
       true -> ok
    end.

fanout(Bin) ->
    ets:foldl(fun({Pid}, ok) -> Pid ! {ev, Bin}, ok end, ok, bench_subs).
