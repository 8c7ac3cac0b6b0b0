"""Hand-written documents that exist to exercise the gates: forum posts (PII, a too-short post), non-commercial
tutorial intros, an unlicensed dump, press releases under a no-derivatives license, and code pastes that trip
one code-quality rule each. The same at every scale."""

from __future__ import annotations

from typing import Any

FORUM_POSTS = (
    "Is there a reason textwrap.dedent leaves my first line alone? I pass a triple-quoted string that starts with "
    "a newline and the indentation of every other line is removed as expected, but the output begins with an "
    "empty line. Answer: dedent only removes common leading whitespace; strip the leading newline yourself.",
    "Quick tip for anyone parsing command lines in small scripts: shlex.split understands quotes the way a POSIX "
    "shell does, so 'copy \"my file.txt\" backup' becomes three arguments instead of four. Do not use it on "
    "untrusted input that will be handed to a shell, though; quote with shlex.quote instead.",
    "I keep mixing up bisect_left and bisect_right. The way I remember it now: for a value already in the list, "
    "bisect_left gives the position of the first equal element and bisect_right the position just after the last "
    "one. For values not in the list they agree.",
    "Why does heapq not have a max-heap? It does not need one for most uses. Push negated keys, or push tuples whose "
    "first element is the negated priority, and pop as usual. The module keeps the smallest item at index zero and "
    "that invariant is all it promises.",
    "Our build script used os.path.join with a user supplied fragment that began with a slash, and the result "
    "silently dropped everything before it. That is documented behaviour: an absolute component resets the path. "
    "We now reject absolute fragments before joining them.",
    "Has anyone benchmarked fractions.Fraction against decimal for money? For our invoicing tool exact rational "
    "arithmetic was simpler to reason about, but formatting to two places needs care, and the denominators grow "
    "quickly when you chain many divisions.",
    "The calendar module can print a whole year in the terminal: python -m calendar 2024. I had written my own "
    "month grid before discovering that, including the week starting on Monday, which calendar already supports "
    "through setfirstweekday.",
    "PSA: urllib.parse.urljoin follows the RFC, so joining a base that does not end in a slash replaces its last "
    "segment. If your API client builds URLs from a base path, make sure the base ends with a slash or you will "
    "hit the wrong endpoint.",
    "statistics.median_low and median_high exist for when the median has to be an actual member of the data, for "
    "example a real order id. The plain median averages the two middle values for an even count, which may be a "
    "value that never occurred.",
    "The pprint module saved me while debugging a nested configuration dictionary. Setting width and depth keeps "
    "the output readable, and sort_dicts can be switched off when the insertion order carries meaning.",
    "weakref.WeakValueDictionary is a neat cache for objects that are expensive to build but should disappear when "
    "nothing else uses them. Remember that entries may vanish between two lines of your code if the last strong "
    "reference goes away.",
    "Reading plist files from macOS tools works with plistlib.load on a binary file handle; both the XML and the "
    "binary formats are detected automatically. Dates come back as datetime objects and data blobs as bytes.",
)

PII_POSTS = (
    "Our staging box at 192.0.2.17 stopped answering after the upgrade. If you have seen this, write to "
    "jane.doe@example.com or call me on +1 202-555-0143 during office hours and we can compare notes.",
    "For the meetup next week the organiser is Bob (bob.smith@example.org, +44 20 7946 0958). The venue wifi hands "
    "out addresses in 198.51.100.0/24 and the projector answers at 198.51.100.23 if you need to cast slides.",
    "Support ticket summary: customer reported timeouts from 203.0.113.42; callback number (415) 555-2671, "
    "alternate contact ops-team@example.net. Resolved by raising the keepalive interval on the load balancer.",
)

NC_TUTORIAL_INTROS = (
    "In this lesson we look at what the {module} module is for and when to reach for it.",
    "Tutorial notes for students: the {module} module, explained from its own documentation.",
    "Workshop handout on {module}: read the summary below, then try the exercises at the end.",
)

MYSTERY_DOCS = (
    "Collected notes from an old wiki export. Nobody remembers where these pages came from or who wrote them, "
    "so the license is unknown. The pages cover editor settings, build flags and a list of favourite shortcuts.",
    "Archived mailing list digest without headers. Topics: release planning, a long thread about tabs versus "
    "spaces, and a request to move the project chat to a different server before the end of the quarter.",
    "Scraped help page with the navigation menu still attached. Home | Products | Support | Contact. Our product "
    "helps teams organise their documents and share them with colleagues in a few clicks.",
)


# Written for the demo: an announcement under a no-derivatives license. The project forbids NO_DERIVATIVES in
# the corpus (a model trained on it is arguably a derivative), so rights.forbidden_tag quarantines all of it.
PRESS_RELEASES = (
    "The city library announced today that its reading rooms will stay open until nine in the evening on "
    "weekdays from next month, after a survey of members asked for longer hours during exam season.",
    "A regional rail operator said that the new timetable adds two early trains on the coastal line and moves "
    "the last departure from the harbour station thirty minutes later on Fridays and Saturdays.",
    "The museum of applied arts will lend forty pieces from its ceramics collection to a touring exhibition, "
    "which opens in the spring and visits four cities before the pieces return home in the autumn.",
)


def press_records() -> list[dict[str, Any]]:
    return [{"id": f"press-{i}", "text": t} for i, t in enumerate(PRESS_RELEASES)]


def mystery_records() -> list[dict[str, Any]]:
    return [{"id": f"dump-{i}", "text": t} for i, t in enumerate(MYSTERY_DOCS)]


# --- code_paste: snippets pasted into a code source, one per code-quality rule ------------------------------------

CODE_PASTES = {
    "clean": "def moving_average(values, window):\n"
    '    """Mean of each run of `window` consecutive values."""\n'
    "    if window <= 0:\n"
    "        raise ValueError('window must be positive')\n"
    "    total = sum(values[:window])\n"
    "    out = [total / window]\n"
    "    for i in range(window, len(values)):\n"
    "        total += values[i] - values[i - window]\n"
    "        out.append(total / window)\n"
    "    return out\n",
    # code.autogenerated
    "generated-stub": "# Code generated by protoc-gen-python from plots.proto. DO NOT EDIT.\n"
    "# source: plots.proto\n\n"
    "PLOT_FIELDS = ('plot_id', 'row', 'size_rods', 'tenant_id', 'status')\n"
    "STATUS_VALUES = {'let': 0, 'vacant': 1, 'reserved': 2, 'under_repair': 3}\n",
    # code.max_line_length (and code.mean_line_length): minified JavaScript on one line.
    "minified-js": ";".join(f"function f{i}(a,b){{return a*{i}+b-{i}}}var v{i}=f{i}({i},{i + 1})" for i in range(40))
    + ";\n",
    # code.mean_line_length: a data table pasted as code, every line long but under the line limit.
    "data-table": "\n".join(
        f"ROW_{i:02d} = ({', '.join(str((i * 37 + j * 11) % 997) for j in range(30))})" for i in range(12)
    )
    + "\n",
    # code.alnum_fraction: an ASCII-art banner comment.
    "ascii-banner": "\n".join(
        ["#" + "=-" * 30 + "#", "#" + " " * 60 + "#", "#   ~~~  ***  <<< >>>  ***  ~~~   #", "#" + "=-" * 30 + "#"] * 6
    )
    + "\nx = 1\n",
}


def code_paste_records() -> list[dict[str, Any]]:
    return [{"id": f"paste-{k}", "text": t} for k, t in CODE_PASTES.items()]
