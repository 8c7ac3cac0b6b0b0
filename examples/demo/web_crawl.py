"""The demo's ``web_crawl`` source: a generated crawl of a small society's website, one page per gating rule it
must trip (boilerplate banners, the Gopher/C4 quality heuristics, wrong-language pages, lexicon hits, a threat
only the moderation model catches, PII and leaked credentials). The same at every scale."""

from __future__ import annotations

import hashlib
from typing import Any

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
