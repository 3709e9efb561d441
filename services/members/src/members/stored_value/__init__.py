"""Stored value: members' prepaid accounts (principal and bonus), recharge bonus rules, and
the debits and credits payments asks for."""
