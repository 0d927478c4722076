"""The country alias table: which words in an answer name which country.

Used to check free-text answers to "In which country is the city of X?"
(:func:`country_table`): an answer names the right country when its first country
mention is one of that country's names. Each line below is
``canonical | other names | adjectives``; the canonical names follow the Geometry of
Truth cities table (Marks & Tegmark) without its leading "the" ("United States",
"Philippines"). How it was written:

* names: the short name, the official long name(s), common abbreviations (USA, U.S., UK,
  UAE, DRC), former or other names still in use (Burma, Ivory Coast, Holland, Persia is
  left out: it names an empire), and the parts of a country used as if they were one
  (England, Scotland, Wales, Northern Ireland -> United Kingdom);
* adjectives: "the Indian state of Gujarat" claims India, so each country's adjective
  counts as naming it (Indian, Russian, Chinese...); an adjective two countries share
  names both (Korean -> North or South Korea, Congolese -> either Congo);
* not countries (:data:`NOT_COUNTRIES`): phrases that contain a country word but name a
  region, sea or people ("South China Sea", "Indian Ocean", "South American", "Gulf of
  Mexico"): they are read past, so "in the South China Sea, in Vietnam" names Vietnam.

Matching is case-sensitive (country names are capitalised; "china" and "turkey" are
words), on whole words, the longest name at the earliest position first: "People's
Republic of China" is China, not the "Republic of China" (Taiwan) inside it.

Example:
    >>> table = country_table()
    >>> table.find("The city of Ajmer is located in the Indian state of Rajasthan.").canonical
    frozenset({'India'})
    >>> table.find("It lies on the South China Sea, in Vietnam.").text
    'Vietnam'
    >>> table.same("USA", "the United States"), table.same("Korean", "North Korea"), table.same("Niger", "Nigeria")
    (True, True, False)
"""

from __future__ import annotations

from functools import lru_cache

from steerlab.hallucination.mentions import MentionTable

COUNTRIES = """
Afghanistan | | Afghan
Albania | | Albanian
Algeria | | Algerian
Andorra | | Andorran
Angola | | Angolan
Antigua and Barbuda | Antigua | Antiguan
Argentina | Argentine Republic | Argentine, Argentinian
Armenia | | Armenian
Australia | Commonwealth of Australia, New South Wales | Australian
Austria | | Austrian
Azerbaijan | | Azerbaijani, Azeri
Bahamas | The Bahamas | Bahamian
Bahrain | | Bahraini
Bangladesh | | Bangladeshi
Barbados | | Barbadian
Belarus | Byelorussia, Belorussia | Belarusian
Belgium | | Belgian
Belize | | Belizean
Benin | | Beninese
Bhutan | | Bhutanese
Bolivia | | Bolivian
Bosnia and Herzegovina | Bosnia & Herzegovina, Bosnia-Herzegovina, Bosnia | Bosnian
Botswana | | Botswanan
Brazil | Brasil, Federative Republic of Brazil | Brazilian
Brunei | Brunei Darussalam | Bruneian
Bulgaria | | Bulgarian
Burkina Faso | Burkina | Burkinabe
Burundi | | Burundian
Cambodia | Kampuchea | Cambodian
Cameroon | | Cameroonian
Canada | British Columbia | Canadian
Cape Verde | Cabo Verde | Cape Verdean
Central African Republic | CAR |
Chad | | Chadian
Chile | | Chilean
China | People's Republic of China, PRC, Mainland China | Chinese
Colombia | | Colombian
Comoros | | Comorian
Costa Rica | | Costa Rican
Côte d'Ivoire | Cote d'Ivoire, Côte d’Ivoire, Cote d’Ivoire, Cote dIvoire, Ivory Coast | Ivorian
Croatia | | Croatian
Cuba | | Cuban
Cyprus | | Cypriot
Czech Republic | Czechia | Czech
Democratic Republic of the Congo | DR Congo, DRC, D.R. Congo, Congo-Kinshasa, Democratic Republic of Congo, Zaire |
Denmark | | Danish
Djibouti | | Djiboutian
Dominica | |
Dominican Republic | |
East Timor | Timor-Leste | Timorese
Ecuador | | Ecuadorian
Egypt | | Egyptian
El Salvador | | Salvadoran
Equatorial Guinea | | Equatoguinean
Eritrea | | Eritrean
Estonia | | Estonian
Eswatini | Swaziland | Swazi
Ethiopia | | Ethiopian
Fiji | | Fijian
Finland | | Finnish
France | French Republic | French
Gabon | | Gabonese
Gambia | The Gambia | Gambian
Georgia | | Georgian
Germany | Federal Republic of Germany | German
Ghana | | Ghanaian
Greece | Hellenic Republic | Greek
Grenada | | Grenadian
Guatemala | | Guatemalan
Guinea | Guinea-Conakry | Guinean
Guinea-Bissau | | Bissau-Guinean
Guyana | | Guyanese
Haiti | | Haitian
Honduras | | Honduran
Hungary | | Hungarian
Iceland | | Icelandic
India | Republic of India, Bharat | Indian
Indonesia | | Indonesian
Iran | Islamic Republic of Iran | Iranian
Iraq | | Iraqi
Ireland | Republic of Ireland, Eire | Irish
Israel | | Israeli
Italy | | Italian
Jamaica | | Jamaican
Japan | | Japanese
Jordan | | Jordanian
Kazakhstan | | Kazakh, Kazakhstani
Kenya | | Kenyan
Kiribati | |
Kosovo | | Kosovar
Kuwait | | Kuwaiti
Kyrgyzstan | Kyrgyz Republic, Kirghizia | Kyrgyz
Laos | Lao PDR | Laotian
Latvia | | Latvian
Lebanon | | Lebanese
Lesotho | |
Liberia | | Liberian
Libya | | Libyan
Liechtenstein | |
Lithuania | | Lithuanian
Luxembourg | | Luxembourgish
Madagascar | | Malagasy
Malawi | | Malawian
Malaysia | | Malaysian
Maldives | | Maldivian
Mali | | Malian
Malta | | Maltese
Marshall Islands | |
Mauritania | | Mauritanian
Mauritius | | Mauritian
Mexico | United Mexican States | Mexican
Micronesia | |
Moldova | Republic of Moldova | Moldovan
Monaco | | Monegasque
Mongolia | | Mongolian
Montenegro | | Montenegrin
Morocco | | Moroccan
Mozambique | | Mozambican
Myanmar | Burma | Burmese
Namibia | | Namibian
Nauru | |
Nepal | | Nepali, Nepalese
Netherlands | Holland, The Netherlands | Dutch
New Zealand | | New Zealander
Nicaragua | | Nicaraguan
Niger | | Nigerien
Nigeria | | Nigerian
North Korea | Democratic People's Republic of Korea, DPRK | North Korean
North Macedonia | Macedonia | Macedonian
Norway | | Norwegian
Oman | | Omani
Pakistan | | Pakistani
Palau | |
Palestine | State of Palestine, West Bank, Gaza Strip | Palestinian
Panama | | Panamanian
Papua New Guinea | PNG |
Paraguay | | Paraguayan
Peru | | Peruvian
Philippines | The Philippines, Republic of the Philippines | Philippine, Filipino
Poland | | Polish
Portugal | | Portuguese
Qatar | | Qatari
Republic of the Congo | Congo-Brazzaville, Republic of Congo |
Romania | Rumania | Romanian
Russia | Russian Federation | Russian
Rwanda | | Rwandan
Saint Kitts and Nevis | |
Saint Lucia | |
Saint Vincent and the Grenadines | |
Samoa | | Samoan
San Marino | |
Sao Tome and Principe | São Tomé and Príncipe |
Saudi Arabia | Kingdom of Saudi Arabia, KSA | Saudi, Saudi Arabian
Senegal | | Senegalese
Serbia | | Serbian
Seychelles | |
Sierra Leone | | Sierra Leonean
Singapore | | Singaporean
Slovakia | Slovak Republic | Slovak
Slovenia | | Slovenian
Solomon Islands | |
Somalia | | Somali
South Africa | Republic of South Africa | South African
South Korea | Republic of Korea, ROK | South Korean
South Sudan | | South Sudanese
Spain | | Spanish
Sri Lanka | Ceylon | Sri Lankan
Sudan | | Sudanese
Suriname | Surinam | Surinamese
Sweden | | Swedish
Switzerland | Swiss Confederation | Swiss
Syria | Syrian Arab Republic | Syrian
Taiwan | Republic of China, ROC | Taiwanese
Tajikistan | | Tajik
Tanzania | United Republic of Tanzania | Tanzanian
Thailand | Siam | Thai
Togo | Togolese Republic | Togolese
Tonga | | Tongan
Trinidad and Tobago | Trinidad | Trinidadian
Tunisia | | Tunisian
Turkey | Türkiye, Turkiye, Republic of Turkey | Turkish
Turkmenistan | | Turkmen
Tuvalu | |
Uganda | | Ugandan
Ukraine | The Ukraine | Ukrainian
United Arab Emirates | UAE, U.A.E., Emirates | Emirati
United Kingdom | UK, U.K., Great Britain, Britain, England, Scotland, Wales, Northern Ireland | British, English, Scottish, Welsh
United States | United States of America, USA, U.S.A., U.S., US, America, New Mexico, New England | American
Uruguay | | Uruguayan
Uzbekistan | | Uzbek
Vanuatu | |
Vatican City | Holy See, Vatican |
Venezuela | | Venezuelan
Vietnam | Viet Nam, Socialist Republic of Vietnam | Vietnamese
Yemen | | Yemeni
Zambia | | Zambian
Zimbabwe | | Zimbabwean
"""

# Adjectives or names shared by countries: the mention names all of them (right when the answer is either).
SHARED = {
    "Korean": ("North Korea", "South Korea"), "Korea": ("North Korea", "South Korea"),
    "Congo": ("Democratic Republic of the Congo", "Republic of the Congo"),
    "Congolese": ("Democratic Republic of the Congo", "Republic of the Congo"),
    "Dominican": ("Dominican Republic", "Dominica"),
}

# Phrases holding a country word that name no country: read past, never a claim.
NOT_COUNTRIES = (
    "South China Sea", "East China Sea", "China Sea", "Indian Ocean", "Indian subcontinent", "Indian Subcontinent",
    "American Indian", "South America", "North America", "Central America", "Latin America", "South American",
    "North American", "Central American", "Latin American", "Native American", "African American",
    "Gulf of Mexico", "Sea of Japan", "Korean Peninsula", "Korean peninsula", "Gulf of Thailand", "Persian Gulf",
    "Arabian Sea", "Arabian Peninsula", "English Channel", "Irish Sea", "British Isles", "French Guiana",
    "French Polynesia", "Dutch Caribbean", "Turkish Cypriot", "Indochina", "Dutch East Indies", "Gulf of Guinea",
)


@lru_cache(maxsize=1)
def country_table() -> MentionTable:
    """The :class:`~steerlab.hallucination.mentions.MentionTable` of every country's names and adjectives."""
    names: dict[str, set[str]] = {}
    for line in COUNTRIES.strip().splitlines():
        canonical, others, adjectives = (part.strip() for part in line.split("|"))
        for form in [canonical, *others.split(","), *adjectives.split(",")]:
            if form.strip():
                names.setdefault(form.strip(), set()).add(canonical)
    for form, countries in SHARED.items():
        names[form] = set(countries)
    return MentionTable(names, not_answers=NOT_COUNTRIES, case_sensitive=True, strip_articles=("the ", "The "))
