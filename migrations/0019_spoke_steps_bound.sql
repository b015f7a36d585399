-- Verified onboarding (issue 12): the onboarding record is bounded. Each
-- spoke keeps its 1,000 most recent steps (the API serves the 500 most
-- recent); an older one goes when a new one is written, so an IdP that
-- flaps for months cannot grow the table without limit.
CREATE FUNCTION spoke_steps_bound() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM spoke_steps
     WHERE spoke_id = NEW.spoke_id
       AND id <= (SELECT id FROM spoke_steps WHERE spoke_id = NEW.spoke_id
                   ORDER BY id DESC OFFSET 1000 LIMIT 1);
    RETURN NULL;
END;
$$;

CREATE TRIGGER spoke_steps_bound AFTER INSERT ON spoke_steps
    FOR EACH ROW EXECUTE FUNCTION spoke_steps_bound();
