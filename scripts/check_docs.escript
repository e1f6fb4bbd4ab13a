#!/usr/bin/env escript
%%! -noshell
%% Checks that the generated docs cover the public API: every exported
%% function of every documented module (not @private) has a doc text and a
%% spec. Builds EEP-48 doc chunks from erl/ with EDoc into a temporary
%% directory. Usage (from the top of the checkout):
%%   escript scripts/check_docs.escript
-mode(compile).

main(_) ->
    Tmp = filename:join(os:getenv("TMPDIR", "/tmp"), "emmap-docs-" ++ os:getpid()),
    Files = filelib:wildcard("erl/*.erl"),
    ok = edoc:files(Files, [{doclet, edoc_doclet_chunks}, {layout, edoc_layout_chunks},
                            {dir, Tmp}, {preprocess, true}, {includes, ["erl"]}]),
    Problems = lists:append([check(F, Tmp) || F <- Files]),
    _ = [file:delete(C) || C <- filelib:wildcard(filename:join([Tmp, "chunks", "*"]))],
    _ = file:del_dir(filename:join(Tmp, "chunks")),
    _ = file:del_dir(Tmp),
    case Problems of
        [] ->
            io:format("docs: every exported function of ~p is documented~n",
                      [[list_to_atom(filename:basename(F, ".erl")) || F <- Files]]);
        _ ->
            [io:format("docs: ~s~n", [P]) || P <- Problems],
            halt(1)
    end.

check(File, Tmp) ->
    Mod = list_to_atom(filename:basename(File, ".erl")),
    {ok, Bin} = file:read_file(filename:join([Tmp, "chunks", atom_to_list(Mod) ++ ".chunk"])),
    {docs_v1, _, erlang, _, ModDoc, _, Entries} = binary_to_term(Bin),
    case ModDoc of
        hidden -> [];                                           % @private
        _ ->
            Exports = exports(File),
            %% A function marked @private (hidden) is documented as not public.
            Documented = [{F, A} || {{function, F, A}, _, _, Doc, _} <- Entries,
                                    Doc =/= none, Doc =/= #{}],
            Specced = specced(File),
            [io_lib:format("~s:~s/~p has no doc", [Mod, F, A])
             || {F, A} <- Exports, F =/= module_info, not lists:member({F, A}, Documented)] ++
            [io_lib:format("~s:~s/~p has no spec", [Mod, F, A])
             || {F, A} <- Exports, F =/= module_info, not lists:member({F, A}, Specced)]
    end.

%% Exports, from the source compiled in memory.
exports(File) ->
    {ok, Mod, Beam} = compile:file(File, [binary, {i, "erl"}]),
    {ok, {Mod, [{exports, Exports}]}} = beam_lib:chunks(Beam, [exports]),
    Exports.

specced(File) ->
    {ok, Forms} = epp:parse_file(File, [{includes, ["erl"]}]),
    [{F, A} || {attribute, _, spec, {{F, A}, _}} <- Forms].
