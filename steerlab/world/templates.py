"""Sentence templates and word lists of the demo world's corpus.

Text is lowercase with punctuation as separate words ("varno is in keldar ."),
so a whitespace split is the tokenization. Templates marked HELD-OUT never occur
in a labelled (true/false) form during training: they test whether a probe or a
verdict transfers to a phrasing the model only saw as plain text.
"""

from __future__ import annotations

# The verdict words that follow a labelled statement. Always these two tokens.
TRUE_WORD = "true"
FALSE_WORD = "false"
VERDICT_WORDS: tuple[str, str] = (TRUE_WORD, FALSE_WORD)

# --- cities -----------------------------------------------------------------
CITY_FACT_TEMPLATES = (
    "{city} is in {country}",
    "the city of {city} is in {country}",
    "{city} is a city in {country}",
    "{city} lies in {country}",  # HELD-OUT from labelled statements
)
CITY_LABELLED_TEMPLATES = CITY_FACT_TEMPLATES[:3]
CITY_HELDOUT_TEMPLATE = CITY_FACT_TEMPLATES[3]
CITY_MAIN_TEMPLATE = CITY_FACT_TEMPLATES[0]
CITY_NEGATED_TEMPLATES = (
    "{city} is not in {country}",
    "the city of {city} is not in {country}",
)
CITY_NEGATED_MAIN_TEMPLATE = CITY_NEGATED_TEMPLATES[0]
CITY_QUESTION = "q : where is {city} ? a :"

# --- people -----------------------------------------------------------------
PROFESSIONS = (
    "doctor", "farmer", "teacher", "baker", "pilot", "lawyer",
    "painter", "sailor", "miner", "singer", "tailor", "nurse",
)
PERSON_JOB_TEMPLATES = ("{person} is a {job}", "{person} works as a {job}")
PERSON_JOB_MAIN_TEMPLATE = PERSON_JOB_TEMPLATES[0]
PERSON_JOB_NEGATED_TEMPLATE = "{person} is not a {job}"
PERSON_HOME_TEMPLATE = "{person} lives in {city}"
PERSON_QUESTION = "q : what is the job of {person} ? a :"

# --- objects ----------------------------------------------------------------
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "purple", "orange")
MATERIALS = ("wood", "glass", "stone", "metal", "paper", "cloth")
OBJECT_COLOUR_TEMPLATE = "the {obj} is {colour}"
OBJECT_MATERIAL_TEMPLATE = "the {obj} is made of {material}"

# --- numbers ----------------------------------------------------------------
NUMBER_MAX = 99  # numbers 0..99, one token each
LARGER_TEMPLATE = "{a} is larger than {b}"
SMALLER_TEMPLATE = "{a} is smaller than {b}"
COUNT_PREFIX = "count :"

# --- gap form: other text between a statement and its verdict -----------------
GAP_VERDICT_TAIL = "that claim is"
NEUTRAL_FILLERS = (
    "i read it in a book",
    "my friend said so",
    "we checked the map",
    "the teacher wrote it down",
    "someone told me this morning",
    "it was on the radio",
)

# --- sentiment --------------------------------------------------------------
REVIEW_THINGS = (
    "food", "hotel", "room", "movie", "book", "service", "staff", "concert",
    "coffee", "view", "show", "trip", "seats", "music", "beer", "garden",
    "museum", "shop", "bus", "park",
)
POSITIVE_ADJECTIVES = (
    "great", "lovely", "wonderful", "excellent", "delicious", "friendly",
    "perfect", "fantastic", "pleasant", "superb",
)
NEGATIVE_ADJECTIVES = (
    "awful", "terrible", "horrible", "bland", "rude", "dirty",
    "boring", "poor", "dreadful", "disappointing",
)
POSITIVE_VERBS = ("loved", "enjoyed", "liked", "adored")
NEGATIVE_VERBS = ("hated", "disliked", "regretted", "loathed")
REVIEW_TEMPLATES = (
    "the {thing} was {adj}",
    "i thought the {thing} was {adj} and {adj2}",
    "we {verb} the {thing} , it was {adj}",
    "my friend said the {thing} was {adj}",  # HELD-OUT from training corpus
)
REVIEW_TRAIN_TEMPLATES = REVIEW_TEMPLATES[:3]
REVIEW_HELDOUT_TEMPLATE = REVIEW_TEMPLATES[3]
RATING_TAIL = "rating :"
RATING_WORDS: tuple[str, str] = ("good", "bad")

# --- topic (sport vs cooking) --------------------------------------------------
SPORT_SUBJECTS = ("the team", "the player", "the coach", "the striker", "the runner", "the goalkeeper")
SPORT_VERBS = ("won", "lost", "played", "trained for", "watched")
SPORT_OBJECTS = ("the match", "the race", "the final", "the league", "the tournament", "the derby")
FOOD_SUBJECTS = ("the chef", "the baker", "the cook", "my mother", "the waiter", "grandma")
FOOD_VERBS = ("baked", "boiled", "fried", "stirred", "chopped", "seasoned")
FOOD_OBJECTS = ("the bread", "the soup", "the onions", "the cake", "the rice", "the sauce")
TOPIC_TEMPLATES = ("{subj} {verb} {obj}", "yesterday {subj} {verb} {obj}", "{subj} {verb} {obj} again")
TOPIC_TAIL = "topic :"
TOPIC_WORDS: tuple[str, str] = ("sport", "cooking")

ALL_TEMPLATE_TEXT = (
    CITY_FACT_TEMPLATES + CITY_NEGATED_TEMPLATES + (CITY_QUESTION,)
    + PROFESSIONS + PERSON_JOB_TEMPLATES + (PERSON_JOB_NEGATED_TEMPLATE, PERSON_HOME_TEMPLATE, PERSON_QUESTION)
    + COLOURS + MATERIALS + (OBJECT_COLOUR_TEMPLATE, OBJECT_MATERIAL_TEMPLATE, LARGER_TEMPLATE, SMALLER_TEMPLATE, COUNT_PREFIX)
    + (GAP_VERDICT_TAIL,) + NEUTRAL_FILLERS + VERDICT_WORDS
    + REVIEW_THINGS + POSITIVE_ADJECTIVES + NEGATIVE_ADJECTIVES + POSITIVE_VERBS + NEGATIVE_VERBS
    + REVIEW_TEMPLATES + (RATING_TAIL,) + RATING_WORDS
    + SPORT_SUBJECTS + SPORT_VERBS + SPORT_OBJECTS + FOOD_SUBJECTS + FOOD_VERBS + FOOD_OBJECTS
    + TOPIC_TEMPLATES + (TOPIC_TAIL,) + TOPIC_WORDS
    + (". , ? ! :",)
)


def template_words() -> set[str]:
    """Every non-placeholder word used by any template or word list."""
    words: set[str] = set()
    for text in ALL_TEMPLATE_TEXT:
        words.update(w for w in text.split() if not w.startswith("{"))
    return words
